/*
 * fdio.c - see fdio.h.
 */
#include "common/fdio.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int fsb_read_full(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n == 0)
            return -EPIPE;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int fsb_writev_full(int fd, struct iovec *iov, int cnt)
{
    while (cnt > 0) {
        ssize_t n = writev(fd, iov, cnt);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        while (cnt > 0 && (size_t)n >= iov->iov_len) {
            n -= (ssize_t)iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0) {
            iov->iov_base = (char *)iov->iov_base + n;
            iov->iov_len -= (size_t)n;
        }
    }
    return 0;
}

int fsb_write_full(int fd, const void *buf, size_t len)
{
    struct iovec iov = { (void *)buf, len };
    return fsb_writev_full(fd, &iov, 1);
}

/* ----------------------------------------------------------------------
 * Frame reader
 */

int fsb_frame_reader_init(struct fsb_frame_reader *r, int fd, size_t cap)
{
    *r = (struct fsb_frame_reader){ .fd = fd, .cap = cap };
    r->buf = malloc(cap);
    return r->buf ? 0 : -ENOMEM;
}

void fsb_frame_reader_free(struct fsb_frame_reader *r)
{
    free(r->buf);
    r->buf = NULL;
}

/*
 * Waits for input in poll() rather than in read().  A thread asleep in
 * read() on a Unix stream socket is woken, for nothing, each time the peer
 * consumes a message this side sent: the socket's write-space wake-up goes
 * to the same wait queue, and read() does not filter it.  That is one
 * wasted wake-up (and two context switches) per request or reply; poll()
 * only wakes for input.
 */
static int wait_readable(int fd)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    while (poll(&p, 1, -1) < 0)
        if (errno != EINTR)
            return -errno;
    return 0;
}

/* Reads once, as much as the stream holds and the buffer's tail takes. */
static int fill_once(struct fsb_frame_reader *r)
{
    int err = wait_readable(r->fd);
    if (err)
        return err;
    for (;;) {
        ssize_t n = read(r->fd, r->buf + r->end, r->cap - r->end);
        if (n > 0) {
            r->end += (size_t)n;
            return 0;
        }
        if (n == 0)
            return -EPIPE;
        if (errno != EINTR)
            return -errno;
    }
}

/* Makes sure NEED (<= cap) bytes from start are buffered.  Moves the
 * unconsumed bytes to the front first if they would not fit: that copies
 * at most what one read brought in. */
static int fill(struct fsb_frame_reader *r, size_t need)
{
    if (r->start + need > r->cap) {
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->end -= r->start;
        r->start = 0;
    }
    while (r->end - r->start < need) {
        int err = fill_once(r);
        if (err)
            return err;
    }
    return 0;
}

static void consume(struct fsb_frame_reader *r, size_t len)
{
    r->start += len;
    if (r->start == r->end)
        r->start = r->end = 0; /* the next read starts at the front */
}

int fsb_frame_next_len(struct fsb_frame_reader *r, uint32_t *len)
{
    int err = fill(r, sizeof(*len));
    if (!err)
        memcpy(len, r->buf + r->start, sizeof(*len));
    return err;
}

int fsb_frame_take(struct fsb_frame_reader *r, size_t len, void **frame)
{
    if (len > r->cap)
        return -EMSGSIZE;
    int err = fill(r, len);
    if (err)
        return err;
    *frame = r->buf + r->start;
    consume(r, len);
    return 0;
}

int fsb_frame_take_into(struct fsb_frame_reader *r, void *dst, size_t len)
{
    size_t have = fsb_frame_buffered(r);
    if (have > len)
        have = len;
    memcpy(dst, r->buf + r->start, have);
    consume(r, have);
    return fsb_read_full(r->fd, (char *)dst + have, len - have);
}
