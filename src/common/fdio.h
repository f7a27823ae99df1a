/*
 * fdio.h - whole-buffer reads and writes on stream fds, retrying short
 * transfers and EINTR.
 */
#ifndef FSB_FDIO_H
#define FSB_FDIO_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

/* Reads exactly len bytes.  Returns 0, -EPIPE on end of stream (also after
 * a partial read), or -errno. */
int fsb_read_full(int fd, void *buf, size_t len);

/* Writes all bytes of iov (which it may modify).  Returns 0 or -errno. */
int fsb_writev_full(int fd, struct iovec *iov, int cnt);

int fsb_write_full(int fd, const void *buf, size_t len);

#endif
