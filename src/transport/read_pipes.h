/*
 * read_pipes.h - the stream server's pipes for READ data: a READ reply's
 * data goes from the host file through one of these into the socket
 * (splice(2)), so the daemon never copies it (fsb_reply_pipe in
 * fuse_engine.h).
 *
 * A fixed pool, made once before the sandbox: as root the pipes can then be
 * larger than /proc/sys/fs/pipe-max-size (1 MiB by default; a 1 MiB READ
 * needs 256 slots plus one for an unaligned start), and their fds are
 * among those the daemon holds before it serves, outside the guests' fd
 * pool.  A READ that finds every pipe in use is copied as before: the pool
 * bounds the fds, not the READs.
 */
#ifndef FSB_READ_PIPES_H
#define FSB_READ_PIPES_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "common/splice_io.h"

/* Pipes in the pool: READs spliced at the same time. */
#define READ_PIPES 16
/* READs below this are copied: for them the extra system calls of a
 * splice cost more than the copy (bench/README.md, "Bulk data"). */
#define READ_PIPE_MIN_SIZE (32 * 1024)

/* Opens the pool, pipes of room for MAX_DATA bytes each.  Returns 0, or
 * -errno when not one pipe could be made (then every READ is copied). */
int read_pipes_open(size_t max_data);

/* A free pipe that takes SIZE bytes at OFFSET, or NULL. */
struct fsb_pipe *read_pipe_take(size_t size, off_t offset);

/* Gives P back.  EMPTY false: it may still hold bytes (draining it
 * failed), so it is closed and the pool has one pipe less. */
void read_pipe_give(struct fsb_pipe *p, bool empty);

#endif
