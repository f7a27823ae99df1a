/*
 * relay.c - see relay.h.
 *
 * Threads: N fuse readers (kernel -> host), one socket reader (host ->
 * kernel), one notification writer (notify_queue.c).  Shared state is the
 * send mutex (one frame at a time on the stream), the pending set (its own
 * lock), and the ending (state_lock).  No thread is ever joined: the
 * program exits once the relay has ended.
 */
#include "mount/relay.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/fdio.h"
#include "common/log.h"
#include "mount/init_filter.h"
#include "mount/notify_queue.h"
#include "mount/pending.h"

/* Bit 0 of a unique marks the kernel's INTERRUPT requests and the replies
 * to them (FUSE_INT_REQ_BIT in fs/fuse/dev.c; not in the UAPI header).
 * Such a reply belongs to the fd of the interrupted request. */
#define INT_REQ_BIT 1ULL

struct fuse_reader {
    struct relay *relay;
    int fd;             /* the session fd or a clone of it */
    unsigned char *buf; /* cfg.max_frame bytes */
};

struct relay {
    struct relay_config cfg;
    struct pending pending;
    struct init_filter init;
    _Atomic uint64_t init_unique; /* of the kernel's FUSE_INIT, once read */
    struct notify_queue *notify;
    pthread_mutex_t send_lock;
    /* The socket reader's; cfg.max_frame bytes, so every message fits and
     * is written to the kernel straight from it. */
    struct fsb_frame_reader replies;

    pthread_mutex_t state_lock;
    pthread_cond_t state_changed;
    bool mounted;
    enum relay_end end;

    struct fuse_reader readers[];
};

/* Records the ending if the relay has not ended yet.  True if it was the
 * first, so that one ending is logged once. */
static bool set_end(struct relay *r, enum relay_end end)
{
    pthread_mutex_lock(&r->state_lock);
    bool first = r->end == RELAY_RUNNING;
    if (first)
        r->end = end;
    pthread_cond_broadcast(&r->state_changed);
    pthread_mutex_unlock(&r->state_lock);
    return first;
}

static void set_mounted(struct relay *r)
{
    pthread_mutex_lock(&r->state_lock);
    r->mounted = true;
    pthread_cond_broadcast(&r->state_changed);
    pthread_mutex_unlock(&r->state_lock);
}

/* Writes one whole reply to /dev/fuse.  Returns 0 or -errno. */
static int write_to_kernel(int fd, const void *msg, size_t len)
{
    if (write(fd, msg, len) >= 0)
        return 0;
    int err = errno;
    /* ENOENT: the request was interrupted or aborted meanwhile and nothing
     * waits for this reply any more.  That is normal. */
    if (err != ENOENT)
        log_debug("reply dropped by the kernel: %s", strerror(err));
    return err == ENOENT ? 0 : -err;
}

/* Answers request UNIQUE ourselves, with ERROR (a negative errno). */
static void reply_error(int fd, uint64_t unique, int error)
{
    struct fuse_out_header oh = { .len = sizeof(oh), .error = error, .unique = unique };
    write_to_kernel(fd, &oh, sizeof(oh));
}

static void fail_pending(uint64_t unique, int fd, void *arg)
{
    (void)arg;
    reply_error(fd, unique, -ENOTCONN);
}

/*
 * The host is gone.  Every request it still owed an answer gets ENOTCONN
 * now, and later ones get it from pending_add().  The mount itself stays:
 * when the program exits, closing /dev/fuse aborts the connection, so every
 * later access fails with ENOTCONN, where an unmount would instead let
 * programs silently write into the guest's own directory underneath.
 */
static void connection_lost(struct relay *r, const char *reason)
{
    pending_close(&r->pending, fail_pending, NULL);
    if (set_end(r, RELAY_LOST))
        log_error("lost connection to %s: %s", r->cfg.address, reason);
}

/* ----------------------------------------------------------------------
 * Kernel -> host
 */

/* FORGET, BATCH_FORGET and INTERRUPT get no reply, nor does NOTIFY_REPLY
 * (the kernel's answer to a host's NOTIFY_RETRIEVE, which reuses the
 * host's notify_unique and must not be tracked as a kernel unique). */
static bool expects_reply(uint32_t opcode)
{
    return opcode != FUSE_FORGET && opcode != FUSE_BATCH_FORGET &&
           opcode != FUSE_INTERRUPT && opcode != FUSE_NOTIFY_REPLY;
}

static void send_to_host(struct relay *r, void *msg, size_t len)
{
    struct iovec iov = { .iov_base = msg, .iov_len = len };
    pthread_mutex_lock(&r->send_lock);
    int err = fsb_writev_full(r->cfg.sock, &iov, 1);
    pthread_mutex_unlock(&r->send_lock);
    if (err)
        connection_lost(r, strerror(-err));
}

static void note_init(struct relay *r, void *msg, size_t len)
{
    const struct fuse_in_header *ih = msg;
    uint64_t none = 0;
    /* Only the first INIT of the session is the real one. */
    if (atomic_compare_exchange_strong(&r->init_unique, &none, ih->unique))
        init_filter_request(&r->init, msg, len);
}

static void forward_request(struct fuse_reader *rd, size_t len)
{
    struct relay *r = rd->relay;
    struct fuse_in_header *ih = (void *)rd->buf;

    if (len < sizeof(*ih) || ih->len != len)
        return; /* the kernel never does this */
    log_debug("request %llu: opcode %u, %zu bytes", (unsigned long long)ih->unique,
              ih->opcode, len);
    if (ih->opcode == FUSE_INIT)
        note_init(r, rd->buf, len);
    if (expects_reply(ih->opcode)) {
        /* Before sending: the reply may arrive before send_to_host returns. */
        int err = pending_add(&r->pending, ih->unique, rd->fd);
        if (err) {
            reply_error(rd->fd, ih->unique, err == -ENOTCONN ? -ENOTCONN : -EIO);
            return;
        }
    }
    send_to_host(r, rd->buf, len);
}

static void device_ended(struct relay *r, int err)
{
    /* ENODEV: the filesystem was unmounted and the kernel ended the
     * session.  Anything else (ECONNABORTED after an abort through
     * /sys/fs/fuse/connections) leaves a dead mount behind. */
    if (err == ENODEV) {
        set_end(r, RELAY_UNMOUNTED);
    } else if (set_end(r, RELAY_DEVICE_ERROR)) {
        log_error("reading /dev/fuse: %s", err == ECONNABORTED ? "connection aborted"
                                                              : strerror(err));
    }
}

static void *fuse_reader_main(void *arg)
{
    struct fuse_reader *rd = arg;
    for (;;) {
        ssize_t n = read(rd->fd, rd->buf, rd->relay->cfg.max_frame);
        if (n >= 0) {
            forward_request(rd, (size_t)n);
            continue;
        }
        /* EINTR, EAGAIN: nothing was read.  ENOENT: the request was
         * interrupted while being read.  libfuse restarts on the same. */
        if (errno == EINTR || errno == EAGAIN || errno == ENOENT)
            continue;
        device_ended(rd->relay, errno);
        return NULL;
    }
}

/* ----------------------------------------------------------------------
 * Host -> kernel
 */

/* Reads one message; points *msg at it (in r->replies: valid until the
 * next read).  Returns 0, -EPIPE at end of stream, -EMSGSIZE for a length
 * outside [header, max_frame], or -errno. */
static int read_message(struct relay *r, void **msg, size_t *len)
{
    uint32_t n;
    int err = fsb_frame_next_len(&r->replies, &n);
    if (err)
        return err;
    *len = n;
    if (n < sizeof(struct fuse_out_header) || n > r->cfg.max_frame)
        return -EMSGSIZE;
    return fsb_frame_take(&r->replies, n, msg);
}

/* init_filter edits the reply through its structs, and messages lie at any
 * offset in the reader's buffer: it works on an aligned copy of the part
 * it knows, which then goes back in place. */
static void deliver_init_reply(struct relay *r, int fd, void *msg, size_t len)
{
    struct {
        struct fuse_out_header oh;
        struct fuse_init_out out;
    } head = { 0 };
    size_t known = len < sizeof(head) ? len : sizeof(head);
    memcpy(&head, msg, known);
    int refused = init_filter_reply(&r->init, &head, known, r->cfg.max_frame);
    memcpy(msg, &head, known);
    int err = write_to_kernel(fd, msg, len);
    if (refused) {
        if (set_end(r, RELAY_INIT_REFUSED))
            log_error("host refused FUSE_INIT: %s", strerror(refused < 0 ? -refused : refused));
    } else if (err) {
        if (set_end(r, RELAY_DEVICE_ERROR))
            log_error("kernel refused the host's FUSE_INIT reply: %s", strerror(-err));
    } else {
        set_mounted(r);
    }
}

static void deliver(struct relay *r, void *msg, size_t len)
{
    struct fuse_out_header oh;
    memcpy(&oh, msg, sizeof(oh)); /* msg may be unaligned, see above */
    if (oh.unique == 0) {
        notify_queue_push(r->notify, msg, len);
        return;
    }
    if (oh.unique & INT_REQ_BIT) {
        int fd = pending_find(&r->pending, oh.unique & ~INT_REQ_BIT);
        if (fd >= 0)
            write_to_kernel(fd, msg, len);
        return;
    }
    int fd = pending_take(&r->pending, oh.unique);
    if (fd < 0) {
        log_debug("reply to unknown request %llu dropped", (unsigned long long)oh.unique);
        return;
    }
    if (oh.unique == atomic_load(&r->init_unique))
        deliver_init_reply(r, fd, msg, len);
    else
        write_to_kernel(fd, msg, len);
}

static void *socket_reader_main(void *arg)
{
    struct relay *r = arg;
    size_t len = 0;
    void *msg;
    int err;
    while ((err = read_message(r, &msg, &len)) == 0)
        deliver(r, msg, len);

    char reason[96];
    if (err == -EPIPE)
        snprintf(reason, sizeof(reason), "connection closed by the host");
    else if (err == -EMSGSIZE)
        snprintf(reason, sizeof(reason), "message of %zu bytes from the host (limit %u)", len,
                 r->cfg.max_frame);
    else
        snprintf(reason, sizeof(reason), "%s", strerror(-err));
    connection_lost(r, reason);
    return NULL;
}

/* ----------------------------------------------------------------------
 * Setup
 */

/* A new /dev/fuse fd attached to the session of SESSION_FD, so that its
 * reader gets requests (and sends replies) on its own queue. */
static int clone_session_fd(int session_fd)
{
    int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    uint32_t master = (uint32_t)session_fd;
    if (ioctl(fd, FUSE_DEV_IOC_CLONE, &master) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

/* Reader I's fd.  Without permission to open /dev/fuse (a mount made by a
 * user through fusermount3) readers share the session fd: the kernel
 * allows concurrent reads of one fd, only with one queue for all. */
static int reader_fd(const struct relay_config *cfg, unsigned i)
{
    if (i == 0)
        return cfg->session_fd;
    int fd = clone_session_fd(cfg->session_fd);
    if (fd >= 0)
        return fd;
    if (i == 1)
        log_debug("cannot clone /dev/fuse (%s): readers share one fd", strerror(-fd));
    return cfg->session_fd;
}

static struct relay *relay_alloc(const struct relay_config *cfg)
{
    struct relay *r = calloc(1, sizeof(*r) + cfg->threads * sizeof(r->readers[0]));
    if (!r)
        return NULL;
    r->cfg = *cfg;
    pending_init(&r->pending);
    pthread_mutex_init(&r->send_lock, NULL);
    pthread_mutex_init(&r->state_lock, NULL);
    pthread_cond_init(&r->state_changed, NULL);
    bool ok = fsb_frame_reader_init(&r->replies, cfg->sock, cfg->max_frame) == 0;
    for (unsigned i = 0; ok && i < cfg->threads; i++) {
        r->readers[i] = (struct fuse_reader){ .relay = r, .fd = -1 };
        /* The kernel refuses reads into less than FUSE_MIN_READ_BUFFER (the
         * handshake makes sure the frame is not smaller) or less than a
         * WRITE of max_write (init_filter caps it to the frame).  In turn it
         * never hands us a request larger than the buffer: it fails those
         * itself (E2BIG for an oversized SETXATTR), so every request fits
         * in one frame. */
        r->readers[i].buf = malloc(cfg->max_frame);
        if (!r->readers[i].buf)
            return NULL; /* the caller exits: nothing to free */
    }
    return ok ? r : NULL;
}

static int start_thread(void *(*fn)(void *), void *arg)
{
    pthread_t tid;
    int err = pthread_create(&tid, NULL, fn, arg);
    if (err)
        return -err;
    pthread_detach(tid);
    return 0;
}

int relay_start(const struct relay_config *cfg, struct relay **out)
{
    if (cfg->max_frame < FUSE_MIN_READ_BUFFER || cfg->threads < 1)
        return -EINVAL;
    struct relay *r = relay_alloc(cfg);
    if (!r)
        return -ENOMEM;
    int err = notify_queue_start(&r->notify, cfg->session_fd);
    for (unsigned i = 0; !err && i < cfg->threads; i++) {
        r->readers[i].fd = reader_fd(cfg, i);
        err = start_thread(fuse_reader_main, &r->readers[i]);
    }
    if (!err)
        err = start_thread(socket_reader_main, r);
    *out = r;
    return err;
}

/* ----------------------------------------------------------------------
 * Waiting
 */

enum relay_end relay_wait_mounted(struct relay *r)
{
    pthread_mutex_lock(&r->state_lock);
    while (!r->mounted && r->end == RELAY_RUNNING)
        pthread_cond_wait(&r->state_changed, &r->state_lock);
    enum relay_end end = r->mounted ? RELAY_RUNNING : r->end;
    pthread_mutex_unlock(&r->state_lock);
    return end;
}

enum relay_end relay_wait(struct relay *r)
{
    pthread_mutex_lock(&r->state_lock);
    while (r->end == RELAY_RUNNING)
        pthread_cond_wait(&r->state_changed, &r->state_lock);
    enum relay_end end = r->end;
    pthread_mutex_unlock(&r->state_lock);
    return end;
}

void relay_stop(struct relay *r)
{
    set_end(r, RELAY_STOPPED);
}
