/*
 * Checks every I/O backend must pass, shared by the backends' unit tests.
 */
#ifndef SPOOL_TESTS_IO_CHECKS_H
#define SPOOL_TESTS_IO_CHECKS_H

#include "io.h"

/* A write with IO_OP_DSYNC (RWF_DSYNC: the commit's write in the always mode) lands whole and
 * reads back; a bad fd still fails it. Uses and removes the file "d" of the backend's
 * directory. */
void io_check_dsync_write(struct io_backend *io);

#endif
