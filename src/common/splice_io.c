/*
 * splice_io.c - see splice_io.h.
 */
#include "common/splice_io.h"
#include "common/fdio.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>

static size_t page_size(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

/* /proc/sys/fs/pipe-max-size, or 0. */
static int pipe_max_size(void)
{
    char buf[32] = { 0 };
    int fd = open("/proc/sys/fs/pipe-max-size", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    return n > 0 ? atoi(buf) : 0;
}

int fsb_pipe_open(struct fsb_pipe *p, size_t want)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0)
        return -errno;
    *p = (struct fsb_pipe){ .rd = fds[0], .wr = fds[1] };
    /* The kernel rounds up to a power of two pages.  Beyond pipe-max-size
     * it wants CAP_SYS_RESOURCE (EPERM): then pipe-max-size it is. */
    int size = fcntl(p->wr, F_SETPIPE_SZ, (int)want);
    if (size < 0 && errno == EPERM && pipe_max_size() > 0)
        size = fcntl(p->wr, F_SETPIPE_SZ, pipe_max_size());
    if (size < 0)
        size = fcntl(p->wr, F_GETPIPE_SZ);
    if (size < 0) {
        int err = -errno;
        fsb_pipe_close(p);
        return err;
    }
    p->slots = (size_t)size / page_size();
    return 0;
}

void fsb_pipe_close(struct fsb_pipe *p)
{
    if (p->rd >= 0)
        close(p->rd);
    if (p->wr >= 0)
        close(p->wr);
    p->rd = p->wr = -1;
}

size_t fsb_pipe_file_slots(size_t len, off_t offset)
{
    size_t page = page_size();
    return ((size_t)offset % page + len + page - 1) / page;
}

size_t fsb_pipe_stream_slots(size_t len)
{
    return 2 * fsb_pipe_file_slots(len, 0) + 2;
}

static int wait_readable(int fd)
{
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    while (poll(&pfd, 1, -1) < 0)
        if (errno != EINTR)
            return -errno;
    return 0;
}

ssize_t fsb_splice_in(int in, off_t *off, struct fsb_pipe *p, size_t len)
{
    size_t moved = 0;
    bool waited = false; /* for input, since the last bytes moved */
    while (moved < len) {
        ssize_t n = splice(in, off, p->wr, NULL, len - moved, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
            moved += (size_t)n;
            waited = false;
            continue;
        }
        if (n == 0)
            break; /* end of input */
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return moved ? (ssize_t)moved : -errno;
        /* EAGAIN: a socket with nothing to read yet, or a full pipe (a
         * file never waits here; a socket that poll() found readable
         * would have given bytes). */
        if (off || waited)
            return fsb_pipe_drain(p, NULL, moved) ? -EIO : -ENOSPC;
        int err = wait_readable(in);
        if (err)
            return moved ? (ssize_t)moved : err;
        waited = true;
    }
    return (ssize_t)moved;
}

int fsb_splice_out(struct fsb_pipe *p, int out, size_t len, unsigned flags, size_t *moved)
{
    size_t done = 0;
    int err = 0;
    while (done < len) {
        ssize_t n = splice(p->rd, NULL, out, NULL, len - done, flags);
        if (n > 0) {
            done += (size_t)n;
        } else if (n == 0) {
            err = -EPIPE;
            break;
        } else if (errno != EINTR) {
            err = -errno;
            break;
        }
    }
    if (moved)
        *moved = done;
    return err;
}

int fsb_pipe_drain(struct fsb_pipe *p, void *buf, size_t len)
{
    char sink[4096];
    while (buf == NULL && len > 0) {
        size_t part = len < sizeof(sink) ? len : sizeof(sink);
        int err = fsb_read_full(p->rd, sink, part);
        if (err)
            return err;
        len -= part;
    }
    return buf ? fsb_read_full(p->rd, buf, len) : 0;
}

int fsb_pipe_empty(struct fsb_pipe *p)
{
    int held;
    if (ioctl(p->rd, FIONREAD, &held) < 0)
        return -errno;
    return fsb_pipe_drain(p, NULL, (size_t)held);
}
