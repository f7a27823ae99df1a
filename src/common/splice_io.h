/*
 * splice_io.h - moving bulk data through a pipe with splice(2), so that
 * it is not copied through user memory: a file's page-cache pages go
 * into a pipe by reference and from there into a socket (the daemon's
 * READ replies), a socket's pages into a pipe and from there into
 * /dev/fuse (the relay).
 *
 * A pipe only takes what fits in its slots, one page (or part of a page)
 * each, and a splice into a full pipe that nobody else drains would wait
 * forever: callers make sure the data fits (fsb_pipe_fits) before they
 * splice, and fsb_splice_in fills without waiting for pipe space, so that
 * a mistake is an error instead of a hang.
 */
#ifndef FSB_SPLICE_IO_H
#define FSB_SPLICE_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct fsb_pipe {
    int rd, wr;     /* -1 when closed */
    size_t slots;   /* its capacity, in pages */
};

/* Opens a pipe of at least WANT bytes (F_SETPIPE_SZ; beyond
 * /proc/sys/fs/pipe-max-size it takes CAP_SYS_RESOURCE), or as large as
 * allowed when it cannot.  Returns 0 or -errno. */
int fsb_pipe_open(struct fsb_pipe *p, size_t want);
void fsb_pipe_close(struct fsb_pipe *p);

/* Slots that LEN bytes of a file at OFFSET take in a pipe: one per page
 * they touch (the page cache is spliced page by page). */
size_t fsb_pipe_file_slots(size_t len, off_t offset);

/* Slots that LEN bytes from a socket may take in a pipe: the socket's
 * buffers may start and end inside pages, so up to two per page. */
size_t fsb_pipe_stream_slots(size_t len);

/* Splices up to LEN bytes from IN (at *OFF, advanced, when OFF is not
 * NULL: a file) into P; a socket IN is waited for with poll().  Stops
 * early only at end of input.  Returns the bytes moved, -ENOSPC when the
 * pipe filled up first (the caller's mistake; the pipe is emptied), or
 * -errno if nothing was moved. */
ssize_t fsb_splice_in(int in, off_t *off, struct fsb_pipe *p, size_t len);

/* Splices exactly LEN bytes from P to OUT (flags: SPLICE_F_MOVE and the
 * like).  Returns 0, -EPIPE when OUT or the pipe ended, or -errno;
 * *MOVED (may be NULL) gets the bytes that did go, so that a caller can
 * fall back to copying the rest when OUT cannot take splices at all
 * (EINVAL with nothing moved). */
int fsb_splice_out(struct fsb_pipe *p, int out, size_t len, unsigned flags, size_t *moved);

/* Empties P of whatever it holds (after a failed splice out of it).
 * Returns 0 or -errno (then the pipe should be closed). */
int fsb_pipe_empty(struct fsb_pipe *p);

/* Empties P of LEN bytes it holds, copying them to BUF (NULL: thrown
 * away).  Returns 0 or -errno (then the pipe should be closed). */
int fsb_pipe_drain(struct fsb_pipe *p, void *buf, size_t len);

#endif
