/*
 * spool-bench floor (floor.c): the parts of a durable put -> delivery measured alone on this
 * machine (one commit of the job's batch, one loopback round trip), paced like an open-loop run.
 */
#ifndef SPOOL_BENCH_FLOOR_H
#define SPOOL_BENCH_FLOOR_H

/* argv[1] is "floor"; returns the exit code. */
int floor_main(int argc, char **argv);

#endif
