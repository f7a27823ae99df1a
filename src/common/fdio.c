/*
 * fdio.c - see fdio.h.
 */
#include "common/fdio.h"
#include "common/halt_poll.h"

#include <errno.h>
#include <limits.h>
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

static long ms_until(const struct timespec *deadline)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (deadline->tv_sec - now.tv_sec) * 1000 + (deadline->tv_nsec - now.tv_nsec) / 1000000;
}

int fsb_read_full_by(int fd, void *buf, size_t len, const struct timespec *deadline)
{
    if (!deadline)
        return fsb_read_full(fd, buf, len);
    char *p = buf;
    while (len > 0) {
        long ms = ms_until(deadline);
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        if (ms <= 0 || poll(&pfd, 1, ms > INT_MAX ? INT_MAX : (int)ms) == 0)
            return -ETIMEDOUT;
        ssize_t n = read(fd, p, len);
        if (n == 0)
            return -EPIPE;
        if (n < 0 && errno != EINTR && errno != EAGAIN)
            return -errno;
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        }
    }
    return 0;
}

void fsb_iov_advance(struct iovec **iov, int *cnt, size_t n)
{
    while (*cnt > 0 && n >= (*iov)->iov_len) {
        n -= (*iov)->iov_len;
        (*iov)++;
        (*cnt)--;
    }
    if (*cnt > 0) {
        (*iov)->iov_base = (char *)(*iov)->iov_base + n;
        (*iov)->iov_len -= n;
    }
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
        fsb_iov_advance(&iov, &cnt, (size_t)n);
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
 * Reads once, as much as the stream holds and the buffer's tail takes.
 *
 * It waits for input in poll() rather than in read().  A thread asleep in
 * read() on a Unix stream socket is woken, for nothing, each time the peer
 * consumes a message this side sent: the socket's write-space wake-up goes
 * to the same wait queue, and read() does not filter it.  That is one
 * wasted wake-up (and two context switches) per request or reply; poll()
 * only wakes for input.  With r->poll, the wait spins first (halt_poll.h).
 */
static int read_once(struct fsb_frame_reader *r, size_t max)
{
    size_t room = r->cap - r->end;
    for (;;) {
        ssize_t n = read(r->fd, r->buf + r->end, max && max < room ? max : room);
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

static int fill_once(struct fsb_frame_reader *r, size_t max)
{
    int err = fsb_halt_poll_wait_fd(r->poll, r->fd);
    return err ? err : read_once(r, max);
}

int fsb_frame_fill_now(struct fsb_frame_reader *r)
{
    struct pollfd pfd = { .fd = r->fd, .events = POLLIN };
    int n = poll(&pfd, 1, 0);
    if (n < 0 && errno != EINTR)
        return -errno;
    if (n <= 0)
        return -EAGAIN;
    if (r->start == r->end)
        r->start = r->end = 0;
    return r->end < r->cap ? read_once(r, r->probe_max) : 0;
}

/* Makes sure NEED (<= cap) bytes from start are buffered, each read
 * taking at most MAX (0: no limit).  Moves the unconsumed bytes to the
 * front first if they would not fit: that copies at most what one read
 * brought in. */
static int fill(struct fsb_frame_reader *r, size_t need, size_t max)
{
    if (r->start + need > r->cap) {
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->end -= r->start;
        r->start = 0;
    }
    while (r->end - r->start < need) {
        int err = fill_once(r, max);
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

int fsb_frame_peek(struct fsb_frame_reader *r, size_t n, const void **head)
{
    int err = fill(r, n, r->probe_max);
    *head = r->buf + r->start;
    return err;
}

int fsb_frame_next_len(struct fsb_frame_reader *r, uint32_t *len)
{
    const void *head;
    int err = fsb_frame_peek(r, sizeof(*len), &head);
    if (!err)
        memcpy(len, head, sizeof(*len));
    return err;
}

int fsb_frame_take(struct fsb_frame_reader *r, size_t len, void **frame)
{
    if (len > r->cap)
        return -EMSGSIZE;
    int err = fill(r, len, 0);
    if (err)
        return err;
    *frame = r->buf + r->start;
    consume(r, len);
    return 0;
}

size_t fsb_frame_take_head(struct fsb_frame_reader *r, size_t len, void **head)
{
    size_t have = fsb_frame_buffered(r);
    if (have > len)
        have = len;
    *head = r->buf + r->start;
    consume(r, have);
    return have;
}

int fsb_frame_take_into(struct fsb_frame_reader *r, void *dst, size_t len)
{
    void *head;
    size_t have = fsb_frame_take_head(r, len, &head);
    memcpy(dst, head, have);
    return fsb_read_full(r->fd, (char *)dst + have, len - have);
}
