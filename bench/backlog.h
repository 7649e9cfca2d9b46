/*
 * spool-bench backlog (backlog.c): the memory, restart time and drain rate of a parked
 * backlog, against a spoold the benchmark starts itself.
 */
#ifndef SPOOL_BENCH_BACKLOG_H
#define SPOOL_BENCH_BACKLOG_H

/* argv[1] is "backlog"; returns the exit code. */
int backlog_main(int argc, char **argv);

#endif
