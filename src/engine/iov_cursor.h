/*
 * iov_cursor.h - a cursor over scatter-gather memory.
 *
 * The engine reads requests and writes replies through cursors, so it never
 * knows whether the bytes live in a socket buffer or in guest memory handed
 * over by a virtqueue.  Fixed-size arguments are copied out (a guest that
 * shares the memory cannot change them after they were checked); payloads
 * are handed to the backend as iovec slices, without copying.
 */
#ifndef FSB_IOV_CURSOR_H
#define FSB_IOV_CURSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/uio.h>

struct iov_cursor {
    const struct iovec *iov;
    int cnt;
    int idx;       /* current iovec */
    size_t off;    /* offset inside iov[idx] */
    size_t left;   /* bytes from here to the end (or to the limit) */
};

void iov_cursor_init(struct iov_cursor *c, const struct iovec *iov, int cnt);

/* Sum of the lengths of an iovec array. */
size_t iov_length(const struct iovec *iov, int cnt);

/* Restricts the cursor to the next LEN bytes (LEN <= left). */
void iov_cursor_limit(struct iov_cursor *c, size_t len);

/* Copies LEN bytes out of the cursor into DST; false if fewer are left. */
bool iov_cursor_read(struct iov_cursor *c, void *dst, size_t len);

/* Copies LEN bytes from SRC into the cursor; false if there is no room. */
bool iov_cursor_write(struct iov_cursor *c, const void *src, size_t len);

/* Skips LEN bytes; false if fewer are left. */
bool iov_cursor_skip(struct iov_cursor *c, size_t len);

/*
 * Describes the next LEN bytes as at most MAX iovecs in OUT, without moving
 * the cursor.  Returns the number of iovecs, or -1 if LEN bytes are not
 * there or need more than MAX pieces.
 */
int iov_cursor_slice(const struct iov_cursor *c, size_t len, struct iovec *out, int max);

#endif
