/*
 * spool-bench leases (leases.c): what a lease costs the broker as the number of leases held
 * grows, in process, on the queue state machine (no server, no disk).
 */
#ifndef SPOOL_BENCH_LEASES_H
#define SPOOL_BENCH_LEASES_H

/* argv[1] is "leases"; returns the exit code. */
int leases_main(int argc, char **argv);

#endif
