/*
 * relay.c - see relay.h.
 *
 * Threads: one reader per fd queue (kernel -> host), one per io_uring
 * queue (uring_queue.c), one reader per host connection (host -> kernel),
 * one notification writer (notify_queue.c).  Shared state is each
 * connection's send mutex (one frame at a time on a stream), the pending
 * set (its own lock), and the ending (state_lock).  No thread is ever
 * joined: the program exits once the relay has ended.
 */
#include "mount/relay.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/fdio.h"
#include "common/log.h"
#include "mount/flush_shortcut.h"
#include "mount/host_events.h"
#include "mount/host_nodes.h"
#include "mount/init_filter.h"
#include "mount/caps_shortcut.h"
#include "mount/held_forgets.h"
#include "mount/missing_names.h"
#include "mount/lazy_open.h"
#include "mount/no_open.h"
#include "mount/notify_queue.h"
#include "mount/attr_notes.h"
#include "mount/pending.h"
#include "mount/relay_internal.h"
#include "mount/uring_queue.h"

/* Bit 0 of a unique marks the kernel's INTERRUPT requests and the replies
 * to them (FUSE_INT_REQ_BIT in fs/fuse/dev.c; not in the UAPI header).
 * Such a reply belongs to the fd of the interrupted request. */
#define INT_REQ_BIT 1ULL

/* The kernel's READs without FUSE_MAX_PAGES (see init_filter.c). */
#define KERNEL_DEFAULT_MAX_PAGES 32

/* A reply at least this large whose rest is still in the socket goes
 * socket -> pipe -> /dev/fuse (splice_reply), not through the reader's
 * buffer: three system calls instead of two, and one copy of the data
 * (the kernel's, into the page cache) instead of two.  Smaller ones are
 * cheaper to copy. */
#define SPLICE_MIN_REPLY (32 * 1024)
/* With a pipe, a read that looks for the next reply takes at most this
 * much: a burst of small replies still comes in one read, and most of a
 * large one stays in the socket for the splice. */
#define REPLY_PROBE_READ (16 * 1024)

/* A /dev/fuse queue: a clone of the session fd and its reader thread. */
struct fd_queue {
    struct reply_dest dest; /* dest.dev_fd: the queue's fd */
    struct relay *relay;
    struct relay_conn *conn;
    unsigned char *buf;     /* cfg.max_frame bytes */
};

struct relay {
    struct relay_config cfg;
    struct pending pending;
    struct init_filter init;
    _Atomic uint64_t init_unique; /* of the kernel's FUSE_INIT, once read */
    struct notify_queue *notify;
    struct flush_shortcut *flushes; /* NULL: every FLUSH goes to the host */
    struct attr_notes *notes;       /* NULL: every GETATTR goes to the host */
    struct lazy_open *lazy;       /* NULL: every OPEN goes to the host */
    struct caps_shortcut *caps;   /* NULL: every GETXATTR goes to the host */
    struct missing_names *missing; /* NULL: every LOOKUP goes to the host */
    struct held_forgets *forgets; /* FORGETs sent with the next request */
    struct host_nodes *nodes;     /* host_events=on, else NULL */
    struct host_events *events;   /* with nodes */
    struct relay_conn *conns;     /* RELAY_MAX_CONNS, nconns of them open */
    unsigned nconns;
    struct uring_queue **rings;   /* nrings, or none */
    unsigned nrings;
    bool uring_live;              /* the kernel uses the rings */
    bool rings_read_conns;        /* ring i reads connection i + 1 itself */

    pthread_mutex_t state_lock;
    pthread_cond_t state_changed;
    bool mounted;
    enum relay_end end;
    char description[96];

    struct fd_queue fdq[];
};

static int conn_init(struct relay *r, struct relay_conn *c, int sock);
static void start_conn_reader(struct relay_conn *c);

/* Ring I's own connection (rings_read_conns). */
static struct relay_conn *ring_conn(struct relay *r, unsigned i)
{
    return &r->conns[i + 1];
}

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

static void deliver_to_fd(struct reply_dest *d, const void *msg, size_t len)
{
    write_to_kernel(d->dev_fd, msg, len);
}

void relay_reply_error(struct reply_dest *dest, uint64_t unique, int error)
{
    struct fuse_out_header oh = { .len = sizeof(oh), .error = error, .unique = unique };
    dest->deliver(dest, &oh, sizeof(oh));
}

/* A GETATTR the relay answers from a note (attr_notes.h). */
/* A reply to UNIQUE with SIZE bytes of BODY: an attr_out or entry_out. */
static void reply_body(struct reply_dest *dest, uint64_t unique, const void *body, size_t size)
{
    struct {
        struct fuse_out_header oh;
        union {
            struct fuse_attr_out attr;
            struct fuse_entry_out entry;
        } u;
    } msg;
    if (size > sizeof(msg.u))
        abort();
    msg.oh = (struct fuse_out_header){ .len = (uint32_t)(sizeof(msg.oh) + size), .unique = unique };
    memcpy(&msg.u, body, size);
    dest->deliver(dest, &msg, msg.oh.len);
}

static void fail_pending(uint64_t unique, struct reply_dest *dest, void *arg)
{
    (void)arg;
    relay_reply_error(dest, unique, -ENOTCONN);
}

/*
 * The host is gone (the loss of any one connection counts: a mount with a
 * dead queue cannot be trusted to make progress).  Every request it still
 * owed an answer gets ENOTCONN now, and later ones get it from
 * pending_add().  The mount itself stays: when the program exits, closing
 * /dev/fuse aborts the connection, so every later access fails with
 * ENOTCONN, where an unmount would instead let programs silently write into
 * the guest's own directory underneath.  (A request the kernel had just
 * queued on one of the program's io_uring entries as it exits ends with
 * ECANCELED instead: the kernel's choice, as lost as ENOTCONN.)
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

/* The connection this thread reads itself, if any (relay_conn_read_here). */
static __thread struct relay_conn *conn_read_here;

void relay_conn_read_here(struct relay_conn *c)
{
    conn_read_here = c;
}

/* Waits until C's socket takes more (EVENTS POLLOUT) or holds a reply,
 * and reads what came; a ring's commits of those replies go to the kernel
 * at once, not after the wait.  Returns 0 or -errno (the relay has ended
 * as a lost host). */
static int read_while_waiting(struct relay_conn *c, short events, int timeout_ms)
{
    struct pollfd p = { .fd = c->sock, .events = (short)(POLLIN | events) };
    int n = poll(&p, 1, timeout_ms);
    if (n < 0 && errno == EINTR)
        return 0;
    if (n < 0 || (p.revents & POLLNVAL)) {
        int err = n < 0 ? -errno : -EBADF;
        connection_lost(c->relay, strerror(-err));
        return err;
    }
    if (n == 0 || !(p.revents & (POLLIN | POLLHUP | POLLERR)))
        return 0;
    int err = relay_conn_read_ready(c);
    uring_queue_submit_here();
    return err;
}

/*
 * Sends IOV on C, which this thread also reads: while the socket is full,
 * it reads C's replies.  The host stops reading a guest's requests while
 * that guest holds more bytes in flight than its budget, replies it has
 * not read included (stream_server.c, wait_for_room): a thread that only
 * waited for room to send would wait for ever, its replies unread (seen:
 * 16 threads of 1 MiB O_DIRECT reads and writes on one CPU hung a ring).
 * Only rings read their own connections, and those are joined ones:
 * sockets (a serial port cannot be joined).  Returns 0 or -errno.
 */
static int send_reading(struct relay_conn *c, struct iovec *iov, int cnt)
{
    while (cnt > 0) {
        struct msghdr m = { .msg_iov = iov, .msg_iovlen = (size_t)cnt };
        ssize_t n = sendmsg(c->sock, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n >= 0) {
            fsb_iov_advance(&iov, &cnt, (size_t)n);
            continue;
        }
        int err = errno == EINTR ? 0 : errno == EAGAIN ? read_while_waiting(c, POLLOUT, -1) : -errno;
        if (err)
            return err;
    }
    return 0;
}

static void send_to_host(struct relay_conn *c, struct iovec *iov, int cnt)
{
    pthread_mutex_lock(&c->send_lock);
    int err = c == conn_read_here ? send_reading(c, iov, cnt) : fsb_writev_full(c->sock, iov, cnt);
    pthread_mutex_unlock(&c->send_lock);
    if (err)
        connection_lost(c->relay, strerror(-err));
}

/* Records that UNIQUE, sent on C, waits for its reply to DEST.  A thread
 * that reads C itself reads it while the pending set is full: the replies
 * that make room may be its own.  Room may also come from other
 * connections, which do not wake its poll: it looks every millisecond. */
static int await_reply(struct relay_conn *c, uint64_t unique, struct reply_dest *dest)
{
    struct pending *p = &c->relay->pending;
    if (c != conn_read_here)
        return pending_add(p, unique, dest);
    int err;
    while ((err = pending_try_add(p, unique, dest)) == -EAGAIN)
        if (read_while_waiting(c, 0, 1) < 0)
            return -ENOTCONN; /* the set is closed too */
    return err;
}

/* The held forgets' own way to the host (held_forgets.h): connection 0,
 * which lives as long as the relay. */
static void send_held(void *arg, struct iovec *iov, int cnt)
{
    send_to_host(arg, iov, cnt);
}

/* A request in IOV (CNT parts, at most 3), after the FORGETs held for it,
 * in one writev. */
static void send_with_held(struct relay_conn *c, struct iovec *iov, int cnt)
{
    struct held_batch b;
    size_t n = cnt <= 3 ? held_forgets_take(c->relay->forgets, &b) : 0;
    if (!n) {
        send_to_host(c, iov, cnt);
        return;
    }
    struct iovec all[4] = { { &b, n } };
    memcpy(all + 1, iov, (size_t)cnt * sizeof(*iov));
    send_to_host(c, all, cnt + 1);
}

/* The LEN bytes of the request's argument that follow its header in IOV:
 * in the first part (a /dev/fuse read) or the second (a ring entry). */
static const void *request_arg(const struct iovec *iov, int cnt, size_t *len)
{
    const struct fuse_in_header *ih = iov[0].iov_base;
    if (iov[0].iov_len > sizeof(*ih)) {
        *len = iov[0].iov_len - sizeof(*ih);
        return (const char *)iov[0].iov_base + sizeof(*ih);
    }
    *len = cnt > 1 ? iov[1].iov_len : 0;
    return cnt > 1 ? iov[1].iov_base : NULL;
}

/* The bytes of the request's argument after its first HEAD (a name after
 * the op's struct), *LEN of them: in ARG (ARG_LEN bytes) from /dev/fuse, in
 * the payload of a ring entry, which keeps the op's struct apart. */
static const void *request_tail(const struct iovec *iov, int cnt, const void *arg,
                                size_t arg_len, size_t head, size_t *len)
{
    if (cnt > 2) {
        *len = iov[2].iov_len;
        return iov[2].iov_base;
    }
    *len = arg_len > head ? arg_len - head : 0;
    return arg_len > head ? (const char *)arg + head : NULL;
}

/* Where a name begins in the argument of request OPCODE: after the op's
 * struct (which a ring entry keeps apart, see request_tail), or at once
 * (LOOKUP; SYMLINK, whose target follows). */
static size_t name_head(uint32_t opcode)
{
    switch (opcode) {
    case FUSE_GETXATTR:
        return sizeof(struct fuse_getxattr_in);
    case FUSE_CREATE:
        return sizeof(struct fuse_create_in);
    case FUSE_MKNOD:
        return sizeof(struct fuse_mknod_in);
    case FUSE_MKDIR:
        return sizeof(struct fuse_mkdir_in);
    case FUSE_LINK:
        return sizeof(struct fuse_link_in);
    case FUSE_RENAME:
        return sizeof(struct fuse_rename_in);
    case FUSE_RENAME2:
        return sizeof(struct fuse_rename2_in);
    }
    return 0;
}

/* An OPEN or RELEASE the relay answers itself (lazy_open.h); false to
 * forward it.  The flush shortcut learns the handle before the kernel
 * can close it. */
static bool answered_lazily(struct relay *r, struct reply_dest *dest,
                            const struct fuse_in_header *ih, const void *arg, size_t len)
{
    struct {
        struct fuse_out_header oh;
        struct fuse_open_out oo;
    } reply;
    enum lazy_answer a = lazy_open_answers(r->lazy, ih, arg, len, &reply.oo);
    if (a == LAZY_FORWARD)
        return false;
    uint64_t fh = reply.oo.fh;
    if (a == LAZY_RELEASED)
        memcpy(&fh, arg, sizeof(fh)); /* fuse_release_in begins with it */
    flush_shortcut_own_handle(r->flushes, fh, a == LAZY_OPENED);
    log_debug("request %llu: %s answered by the relay", (unsigned long long)ih->unique,
              a == LAZY_OPENED ? "OPEN" : "RELEASE");
    if (a == LAZY_RELEASED) {
        relay_reply_error(dest, ih->unique, 0);
        return true;
    }
    reply.oh = (struct fuse_out_header){ .len = sizeof(reply), .unique = ih->unique };
    dest->deliver(dest, &reply, sizeof(reply));
    return true;
}

void relay_send(struct relay_conn *c, struct reply_dest *dest, const struct fuse_in_header *ih,
                struct iovec *iov, int cnt)
{
    size_t arg_len;
    const void *arg = request_arg(iov, cnt, &arg_len);
    struct fuse_attr_out attr;
    if (attr_notes_answer(c->relay->notes, ih, &attr)) {
        log_debug("request %llu: GETATTR answered by the relay", (unsigned long long)ih->unique);
        reply_body(dest, ih->unique, &attr, sizeof(attr));
        return;
    }
    if (no_open_answers(c->relay->init.no_open, ih)) {
        log_debug("request %llu: answered ENOSYS by the relay (open=none)",
                  (unsigned long long)ih->unique);
        relay_reply_error(dest, ih->unique, -ENOSYS);
        return;
    }
    if (answered_lazily(c->relay, dest, ih, arg, arg_len))
        return;
    size_t name_len;
    const void *name = request_tail(iov, cnt, arg, arg_len, name_head(ih->opcode), &name_len);
    struct fuse_entry_out negative;
    if (missing_names_answer(c->relay->missing, ih, name, name_len, &negative)) {
        log_debug("request %llu: LOOKUP answered by the relay (a new directory)",
                  (unsigned long long)ih->unique);
        reply_body(dest, ih->unique, &negative, sizeof(negative));
        return;
    }
    if (caps_shortcut_answers(c->relay->caps, ih, name, name_len)) {
        log_debug("request %llu: GETXATTR answered by the relay", (unsigned long long)ih->unique);
        relay_reply_error(dest, ih->unique, -ENODATA);
        return;
    }
    if (flush_shortcut_answers(c->relay->flushes, ih, arg, arg_len)) {
        log_debug("request %llu: FLUSH answered by the relay", (unsigned long long)ih->unique);
        relay_reply_error(dest, ih->unique, 0);
        return;
    }
    if (expects_reply(ih->opcode)) {
        /* Before sending: the reply may arrive before send_to_host returns. */
        int err = await_reply(c, ih->unique, dest);
        if (err) {
            relay_reply_error(dest, ih->unique, err == -ENOTCONN ? -ENOTCONN : -EIO);
            return;
        }
    }
    flush_shortcut_forwarding(c->relay->flushes, ih, arg, arg_len);
    attr_notes_forwarding(c->relay->notes, ih, arg, arg_len);
    lazy_open_forwarding(c->relay->lazy, ih, arg, arg_len);
    caps_shortcut_forwarding(c->relay->caps, ih, arg, arg_len);
    missing_names_forwarding(c->relay->missing, ih, arg, arg_len, name, name_len);
    if (!held_forgets_hold(c->relay->forgets, ih, arg, arg_len))
        send_with_held(c, iov, cnt);
}

bool relay_abandon(struct relay_conn *c, uint64_t unique, struct reply_dest *discard, int error)
{
    struct reply_dest *d = pending_swap(&c->relay->pending, unique, discard);
    if (d)
        relay_reply_error(d, unique, -error);
    return d != NULL;
}

void relay_forward(struct relay_conn *c, struct reply_dest *dest,
                   const struct fuse_in_header *ih, struct iovec *iov, int cnt)
{
    struct relay *r = c->relay;
    if (r->events && host_events_intercept(r->events, c, dest, ih, iov, cnt))
        return;
    if (r->nodes)
        host_nodes_request(r->nodes, ih, iov, cnt, false);
    relay_send(c, dest, ih, iov, cnt);
}

static void note_init(struct relay *r, void *msg, size_t len)
{
    const struct fuse_in_header *ih = msg;
    uint64_t none = 0;
    /* Only the first INIT of the session is the real one. */
    if (atomic_compare_exchange_strong(&r->init_unique, &none, ih->unique))
        init_filter_request(&r->init, msg, len);
}

static void forward_from_fd(struct fd_queue *q, size_t len)
{
    struct fuse_in_header *ih = (void *)q->buf;
    if (len < sizeof(*ih) || ih->len != len)
        return; /* the kernel never does this */
    log_debug("request %llu: opcode %u, %zu bytes", (unsigned long long)ih->unique,
              ih->opcode, len);
    if (ih->opcode == FUSE_INIT)
        note_init(q->relay, q->buf, len);
    /* the lookups the echo answered itself are the relay's to forget */
    if ((ih->opcode == FUSE_FORGET || ih->opcode == FUSE_BATCH_FORGET) && q->relay->nodes &&
        (len = host_nodes_forget(q->relay->nodes, q->buf, len)) == 0)
        return;
    struct iovec iov = { .iov_base = q->buf, .iov_len = len };
    relay_forward(q->conn, &q->dest, ih, &iov, 1);
}

static void device_ended(struct relay *r, int err)
{
    /* ENODEV: the filesystem was unmounted and the kernel ended the
     * session.  Anything else (ECONNABORTED after an abort through
     * /sys/fs/fuse/connections, with the FUSE_ABORT_ERROR init_filter.c
     * grants) leaves a dead mount behind. */
    if (err == ENODEV) {
        set_end(r, RELAY_UNMOUNTED);
    } else if (set_end(r, RELAY_DEVICE_ERROR)) {
        log_error("reading /dev/fuse: %s", err == ECONNABORTED ? "connection aborted"
                                                              : strerror(err));
    }
}

/*
 * ECONNABORTED comes after an abort through fusectl, on every read from
 * then on; but also, once, to a reader that took a request off the
 * kernel's queue just as an unmount shut the connection down (fs/fuse/dev.c,
 * fuse_dev_do_read: "Must not put request on fpq->io queue after having
 * been shut down"), which the next read then tells: ENODEV.  Without this
 * a lazy unmount whose last close raced the reader ended the relay with an
 * error, one time in ten (test_lifecycle's lazy-umount test in a loop).
 */
static void *fd_queue_main(void *arg)
{
    struct fd_queue *q = arg;
    bool aborted_once = false;
    for (;;) {
        ssize_t n = read(q->dest.dev_fd, q->buf, q->relay->cfg.max_frame);
        if (n >= 0) {
            forward_from_fd(q, (size_t)n);
            continue;
        }
        /* EINTR, EAGAIN: nothing was read.  ENOENT: the request was
         * interrupted while being read.  libfuse restarts on the same. */
        if (errno == EINTR || errno == EAGAIN || errno == ENOENT)
            continue;
        if (errno == ECONNABORTED && !aborted_once) {
            aborted_once = true;
            continue;
        }
        device_ended(q->relay, errno);
        return NULL;
    }
}

/* ----------------------------------------------------------------------
 * Host -> kernel
 */

/* Waits for the next message from C and stores its length in *len.
 * Returns 0, -EPIPE at end of stream, -EMSGSIZE for a length outside
 * [header, max_frame], or -errno. */
static int next_message(struct relay_conn *c, size_t *len)
{
    uint32_t n;
    int err = fsb_frame_next_len(&c->replies, &n);
    if (err)
        return err;
    *len = n;
    if (n < sizeof(struct fuse_out_header) || n > c->relay->cfg.max_frame)
        return -EMSGSIZE;
    return 0;
}

static void describe(struct relay *r)
{
    snprintf(r->description, sizeof(r->description), "%s, %u queue%s, %u connection%s%s",
             r->uring_live ? "io_uring" : "/dev/fuse",
             r->uring_live ? r->nrings : r->cfg.queues,
             (r->uring_live ? r->nrings : r->cfg.queues) == 1 ? "" : "s", r->nconns,
             r->nconns == 1 ? "" : "s", r->cfg.poll_us ? "" : ", no polling");
}

/* After the INIT reply that enabled FUSE_OVER_IO_URING: every ring
 * registers its entries.  A refusal makes the kernel fall back to
 * /dev/fuse (it clears io_uring on a failed REGISTER), where the fd queues
 * already read. */
static bool register_rings(struct relay *r)
{
    int err = 0;
    unsigned i;
    for (i = 0; i < r->nrings && !err; i++)
        err = r->rings_read_conns
                  ? uring_queue_register(r->rings[i], ring_conn(r, i), true)
                  : uring_queue_register(r->rings[i], &r->conns[i % r->nconns], false);
    for (unsigned j = i; j < r->nrings; j++)
        uring_queue_discard(r->rings[j]);
    r->uring_live = !err;
    if (!err)
        return true;
    /* The connections of the rings that did not register have nobody
     * reading them now; the fd queues may send on them. */
    for (unsigned j = i - 1; r->rings_read_conns && j < r->nrings; j++)
        start_conn_reader(ring_conn(r, j));
    if (r->cfg.uring == RELAY_URING_ON) {
        if (set_end(r, RELAY_INIT_REFUSED))
            log_error("uring=on: the kernel refused io_uring queue %u: %s", i - 1,
                      strerror(-err));
        return false;
    }
    log_info("the kernel refused io_uring queue %u (%s): using /dev/fuse queues", i - 1,
             strerror(-err));
    return true;
}

/* uring=on needs the kernel's offer; without it the mount fails before
 * the INIT reply (the caller then unmounts).  True to go on. */
static bool uring_offer_ok(struct relay *r)
{
    if (r->cfg.uring != RELAY_URING_ON || init_filter_offers_uring(&r->init))
        return true;
    if (set_end(r, RELAY_INIT_REFUSED))
        log_error("uring=on: the kernel does not offer FUSE-over-io_uring (it needs Linux "
                  "6.14+ with CONFIG_FUSE_IO_URING and the fuse module's enable_uring=1)");
    return false;
}

/* Connections wanted: one per queue that will carry requests (rings if
 * the INIT reply grants them, at most queues= of them, else fd queues).
 * With a ring per CPU and queues= not below them, one more: each ring then
 * reads the replies of a connection of its own in its own io_uring, and
 * connection 0 stays with what comes through /dev/fuse (INIT, FORGET,
 * INTERRUPT) and the host's notifications. */
static unsigned connections_wanted(const struct relay *r)
{
    unsigned want = r->cfg.queues;
    if (r->init.uring)
        want = r->nrings <= want ? r->nrings + 1 : want;
    return want > RELAY_MAX_CONNS ? RELAY_MAX_CONNS : want;
}

/* Opens the connections wanted, when the host lets connections join.  A
 * join that fails leaves the queues sharing the connections there are,
 * read by reader threads. */
static void join_connections(struct relay *r)
{
    unsigned want = connections_wanted(r);
    /* Connection i + 1 is ring i's (ring_conn), and ring i runs on CPU i. */
    bool per_ring = r->init.uring && want == r->nrings + 1;
    while (r->cfg.join && r->nconns < want) {
        struct relay_conn *c = &r->conns[r->nconns];
        int fd = r->cfg.join(r->cfg.join_arg, per_ring ? (int)r->nconns - 1 : -1);
        if (fd < 0)
            break;
        if (conn_init(r, c, fd) < 0) {
            log_error("cannot set up a connection: out of resources");
            close(fd);
            break;
        }
        r->nconns++;
    }
    r->rings_read_conns = r->init.uring && r->nconns == r->nrings + 1;
    for (unsigned i = 1; !r->rings_read_conns && i < r->nconns; i++)
        start_conn_reader(&r->conns[i]);
    /* A ring's connection is read by the ring's thread alone, which must
     * never wait for its send lock: another thread holding it in a send
     * to a full socket would hold it as long as the ring does not read.
     * So with rings reading their own connections, the fd queues (FORGET,
     * INTERRUPT: little, while rings are live) share connection 0 and its
     * reader thread, also if the rings then fall back (register_rings). */
    for (unsigned i = 0; i < r->cfg.queues; i++)
        r->fdq[i].conn = r->rings_read_conns ? &r->conns[0] : &r->conns[i % r->nconns];
}

static void log_no_open(const struct relay *r);

/* init_filter edits the reply through its structs, and messages lie at any
 * offset in the reader's buffer: it works on an aligned copy of the part
 * it knows, which then goes back in place. */
static void deliver_init_reply(struct relay *r, struct reply_dest *dest, void *msg, size_t len)
{
    struct {
        struct fuse_out_header oh;
        struct fuse_init_out out;
    } head = { 0 };
    size_t known = len < sizeof(head) ? len : sizeof(head);
    if (!uring_offer_ok(r))
        return;
    memcpy(&head, msg, known);
    int refused = init_filter_reply(&r->init, &head, known, r->cfg.max_frame);
    memcpy(msg, &head, known);
    if (!refused)
        join_connections(r);
    int err = write_to_kernel(dest->dev_fd, msg, len);
    if (refused) {
        if (set_end(r, RELAY_INIT_REFUSED))
            log_error("host refused FUSE_INIT: %s", strerror(refused < 0 ? -refused : refused));
    } else if (err) {
        if (set_end(r, RELAY_DEVICE_ERROR))
            log_error("kernel refused the host's FUSE_INIT reply: %s", strerror(-err));
    } else if (!r->init.uring || register_rings(r)) {
        for (unsigned i = 0; !r->init.uring && i < r->nrings; i++)
            uring_queue_discard(r->rings[i]);
        log_no_open(r);
        describe(r);
        set_mounted(r);
    }
}

/* Replies that go to their request's queue (not notifications, replies
 * to INTERRUPT, or the INIT reply). */
static bool is_plain_reply(struct relay *r, uint64_t unique)
{
    return unique != 0 && !(unique & INT_REQ_BIT) && unique != atomic_load(&r->init_unique);
}

/*
 * An invalidation of attributes alone (FUSE_NOTIFY_INVAL_INODE, offset
 * below 0) touches no page and takes no lock a request may hold, so it
 * cannot block: it goes to the kernel at once, in its order with the
 * replies of this connection.  The host sends one before a reply whose
 * request changed attributes the kernel does not know of (a mode set by
 * an ACL): the caller must see them once its call returns.
 */
static bool is_attr_invalidation(const void *msg, size_t len, const struct fuse_out_header *oh)
{
    struct fuse_notify_inval_inode_out a;
    if (oh->error != FUSE_NOTIFY_INVAL_INODE || len != sizeof(*oh) + sizeof(a))
        return false;
    memcpy(&a, (const char *)msg + sizeof(*oh), sizeof(a));
    return a.off < 0;
}

/* The destination of reply OH, out of the pending set (NULL: not in
 * flight), the shortcuts shown the reply (BODY: the LEN bytes read of it
 * after the header) on the way. */
static struct reply_dest *take_dest(struct relay *r, const struct fuse_out_header *oh,
                                    const void *body, size_t len)
{
    struct reply_dest *d = pending_take(&r->pending, oh->unique);
    if (d) {
        flush_shortcut_reply(r->flushes, oh, body, len);
        attr_notes_replied(r->notes, oh->unique);
        caps_shortcut_reply(r->caps, oh, body, len);
        missing_names_replied(r->missing, oh->unique);
    }
    return d;
}

/* Whether host message OH (MSG, LEN bytes, unique 0) is a note for the
 * relay (stream_hello.h), which the kernel must never see: it would
 * refuse the unknown code. */
static bool host_note(struct relay *r, const struct fuse_out_header *oh, const void *msg,
                      size_t len)
{
    if (oh->error == FSB_NOTIFY_EMPTY_DIR) {
        missing_names_note(r->missing, msg, len);
        return true;
    }
    return attr_notes_host_message(r->notes, msg, len);
}

static void deliver(struct relay_conn *c, void *msg, size_t len)
{
    struct relay *r = c->relay;
    struct fuse_out_header oh;
    memcpy(&oh, msg, sizeof(oh)); /* msg may be unaligned, see above */
    if (oh.unique == 0 && host_note(r, &oh, msg, len))
        return; /* a note: the relay's alone */
    if (oh.unique == 0) {
        missing_names_notified(r->missing, msg, len);
        caps_shortcut_host_message(r->caps, msg, len);
    }
    if (oh.unique == 0 && is_attr_invalidation(msg, len, &oh)) {
        int err = write(r->cfg.session_fd, msg, len) < 0 ? -errno : 0;
        if (r->events)
            host_events_notified(r->events, msg, len, err);
        return;
    }
    if (oh.unique == 0) {
        notify_queue_push(r->notify, msg, len);
        return;
    }
    if (oh.unique & INT_REQ_BIT) {
        struct reply_dest *d = pending_find(&r->pending, oh.unique & ~INT_REQ_BIT);
        if (d)
            write_to_kernel(d->dev_fd, msg, len);
        return;
    }
    struct reply_dest *d = take_dest(r, &oh, (const char *)msg + sizeof(oh), len - sizeof(oh));
    if (!d) {
        log_debug("reply to unknown request %llu dropped", (unsigned long long)oh.unique);
        return;
    }
    if (oh.unique == atomic_load(&r->init_unique)) {
        deliver_init_reply(r, d, msg, len);
        return;
    }
    if (r->nodes)
        host_nodes_reply(r->nodes, msg, len);
    d->deliver(d, msg, len);
}

/* The socket took no splice (EINVAL before the first byte): the HAVE bytes
 * of the reply already in the pipe come back out, the rest is read, and
 * the reply is copied to D; the connection copies from now on. */
static int copy_after_refusal(struct relay_conn *c, struct reply_dest *d, size_t len, size_t have)
{
    log_info("the connection to %s takes no splice: replies are copied", c->relay->cfg.address);
    char *msg = malloc(len);
    int err = msg ? fsb_pipe_drain(&c->pipe, msg, have) : -ENOMEM;
    if (!err)
        err = fsb_read_full(c->sock, msg + have, len - have);
    if (!err)
        d->deliver(d, msg, len);
    free(msg);
    fsb_pipe_close(&c->pipe);
    c->replies.probe_max = 0;
    return err;
}

/*
 * A large reply for a /dev/fuse queue, LEN bytes: what the reader has of
 * it goes into the pipe, the rest is spliced from the socket behind it
 * (the daemon spliced it from the host file, so these are its page-cache
 * pages), and the whole message is spliced into /dev/fuse, which copies
 * the data into the guest's page cache.  The relay checked the length
 * (next_message) and the unique (the pending set knew it); the kernel
 * checks the rest, as for a write().  Returns 0 or -errno: the stream is
 * broken then.
 */
static int splice_reply(struct relay_conn *c, struct reply_dest *d, size_t len)
{
    void *head;
    size_t have = fsb_frame_take_head(&c->replies, len, &head);
    int err = fsb_write_full(c->pipe.wr, head, have);
    ssize_t n = err ? err : fsb_splice_in(c->sock, NULL, &c->pipe, len - have);
    if (n == -EINVAL)
        return copy_after_refusal(c, d, len, have);
    if (n >= 0 && (size_t)n < len - have)
        n = -EPIPE; /* the stream ended inside the reply */
    if (n < 0) {
        fsb_pipe_empty(&c->pipe);
        return (int)n;
    }
    err = fsb_splice_out(&c->pipe, d->dev_fd, len, SPLICE_F_MOVE, NULL);
    if (err) {
        /* ENOENT: interrupted meanwhile, as in write_to_kernel. */
        if (err != -ENOENT)
            log_debug("reply dropped by the kernel: %s", strerror(-err));
        if (fsb_pipe_empty(&c->pipe))
            return -EIO;
    }
    return 0;
}

/* A large reply for a ring entry: its payload is read from the socket
 * straight into the entry's buffer (what the reader has of it copied
 * there), not through the reader's buffer.  False when it does not fit
 * there: then it takes the usual way, which answers EIO. */
static bool read_in_place(struct relay_conn *c, struct reply_dest *d, size_t len,
                          const struct fuse_out_header *oh, int *err)
{
    size_t payload = len - sizeof(*oh);
    void *buf = d->payload_buf(d, payload);
    if (!buf)
        return false;
    void *head;
    fsb_frame_take_head(&c->replies, sizeof(*oh), &head); /* peeked: buffered */
    *err = fsb_frame_take_into(&c->replies, buf, payload);
    if (!*err)
        d->deliver_in_place(d, oh, payload);
    return true;
}

/* Whether the next reply, LEN bytes, is large and mostly still in the
 * socket: worth splicing, or reading in place. */
static bool large_and_unread(const struct relay_conn *c, size_t len)
{
    return c->replies.probe_max && len >= SPLICE_MIN_REPLY &&
           len - fsb_frame_buffered(&c->replies) >= SPLICE_MIN_REPLY / 2;
}

/* Reads one reply of LEN bytes (next_message checked the length) and
 * hands it on.  Returns 0 or -errno. */
static int relay_reply(struct relay_conn *c, size_t len)
{
    struct reply_dest *d = NULL;
    const void *head;
    struct fuse_out_header oh;
    int err;
    if (large_and_unread(c, len)) {
        if ((err = fsb_frame_peek(&c->replies, sizeof(oh), &head)))
            return err;
        memcpy(&oh, head, sizeof(oh));
        /* a listing the node table reads goes the copying way */
        if (is_plain_reply(c->relay, oh.unique) &&
            !(c->relay->nodes && host_nodes_wants(c->relay->nodes, oh.unique)))
            d = take_dest(c->relay, &oh, NULL, 0); /* the body is still unread */
        if (d && d->to_dev_fd && c->pipe.rd >= 0 &&
            fsb_pipe_stream_slots(len) <= c->pipe.slots)
            return splice_reply(c, d, len);
        if (d && d->payload_buf && read_in_place(c, d, len, &oh, &err))
            return err;
    }
    void *msg;
    if ((err = fsb_frame_take(&c->replies, len, &msg)))
        return err;
    if (d)
        d->deliver(d, msg, len); /* taken above: a ring entry's */
    else
        deliver(c, msg, len);
    return 0;
}

/* Reading C failed with ERR (LEN: the length read, for -EMSGSIZE). */
static void conn_failed(struct relay_conn *c, int err, size_t len)
{
    char reason[96];
    if (err == -EPIPE)
        snprintf(reason, sizeof(reason), "connection closed by the host");
    else if (err == -EMSGSIZE)
        snprintf(reason, sizeof(reason), "message of %zu bytes from the host (limit %u)", len,
                 c->relay->cfg.max_frame);
    else
        snprintf(reason, sizeof(reason), "%s", strerror(-err));
    connection_lost(c->relay, reason);
}

static void *conn_reader_main(void *arg)
{
    struct relay_conn *c = arg;
    size_t len = 0;
    int err;
    while ((err = next_message(c, &len)) == 0 && (err = relay_reply(c, len)) == 0)
        ;
    conn_failed(c, err, len);
    return NULL;
}

int relay_conn_read_ready(struct relay_conn *c)
{
    /* The ring's poll said readable, but the socket may hold nothing by
     * now (seen under bench.sh: a ring's thread asleep in poll() at the
     * start of a reply, its socket and buffer empty, the host owing
     * nothing).  Waiting here would hold back the commits the thread has
     * prepared and not yet submitted, the replies the kernel waits for:
     * no program then makes another request, and the mount stalls for
     * good.  So only what is there now is read; nothing: back to the ring,
     * which polls again.  Once a message has begun, what is buffered
     * after it has begun too, so reading it waits at most for its rest. */
    int err = fsb_frame_buffered(&c->replies) ? 0 : fsb_frame_fill_now(&c->replies);
    if (err == -EAGAIN)
        return 0;
    if (err) {
        conn_failed(c, err, 0);
        return err;
    }
    size_t len = 0;
    do {
        err = next_message(c, &len);
        if (!err)
            err = relay_reply(c, len);
        if (err) {
            conn_failed(c, err, len);
            return err;
        }
    } while (fsb_frame_buffered(&c->replies) > 0);
    return 0;
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

/* Queue I's fd.  Without permission to open /dev/fuse (a mount made by a
 * user through fusermount3) queues share the session fd: the kernel
 * allows concurrent reads of one fd, only with one processing list. */
static int queue_fd(const struct relay_config *cfg, unsigned i)
{
    if (i == 0)
        return cfg->session_fd;
    int fd = clone_session_fd(cfg->session_fd);
    if (fd >= 0)
        return fd;
    if (i == 1)
        log_debug("cannot clone /dev/fuse (%s): queues share one fd", strerror(-fd));
    return cfg->session_fd;
}

/* A connection's pipe for large replies: without one (out of fds) they
 * are copied. */
static void conn_open_pipe(struct relay_conn *c)
{
    size_t slots = fsb_pipe_stream_slots(c->relay->cfg.max_frame);
    int err = fsb_pipe_open(&c->pipe, slots * (size_t)sysconf(_SC_PAGESIZE));
    if (err)
        log_debug("no pipe for replies (%s): they are copied", strerror(-err));
    else
        c->replies.probe_max = REPLY_PROBE_READ;
}

static int conn_init(struct relay *r, struct relay_conn *c, int sock)
{
    *c = (struct relay_conn){ .relay = r, .sock = sock, .pipe = { .rd = -1, .wr = -1 } };
    pthread_mutex_init(&c->send_lock, NULL);
    fsb_halt_poll_init(&c->poll, r->cfg.poll_us);
    int err = fsb_frame_reader_init(&c->replies, sock, r->cfg.max_frame);
    c->replies.poll = &c->poll;
    if (!err)
        conn_open_pipe(c);
    return err;
}

static void *conn_reader_main(void *arg);
static int start_thread(void *(*fn)(void *), void *arg);

static void start_conn_reader(struct relay_conn *c)
{
    /* Out of threads: the connection stays unread, and a request sent on
     * it waits, so the host is as good as lost. */
    if (start_thread(conn_reader_main, c) < 0)
        connection_lost(c->relay, "cannot start a connection's reader: out of resources");
}

/* Whether the relay answers read-only OPENs itself (lazy_open.h), and
 * why not, for the debug log.  Not on the mounted line, which says how
 * requests travel (queues, connections), not which of them the relay
 * answers: flush= is not there either. */
static bool relay_opens_lazily(const struct relay_config *cfg)
{
    return cfg->open_mode != RELAY_OPEN_HOST && (cfg->terms.features & FSB_TERMS_LAZY_OPEN) &&
           !cfg->host_checks_permissions;
}

/* open=none is logged at INIT, where it is decided (log_no_open). */
static void log_open_mode(const struct relay_config *cfg)
{
    const char *why = relay_opens_lazily(cfg)                        ? NULL
                      : cfg->open_mode == RELAY_OPEN_HOST             ? "open=host"
                      : cfg->host_checks_permissions                  ? "no_default_permissions"
                      : "the host does not take lazy handles";
    if (why)
        log_debug("opens: every open goes to the host (%s)", why);
    else if (cfg->open_mode == RELAY_OPEN_AUTO)
        log_debug("opens: the relay answers plain read-only opens (open=auto)");
}

/* Asked for open=none and did not get it: the user should know. */
static void log_no_open(const struct relay *r)
{
    if (r->cfg.open_mode != RELAY_OPEN_NONE)
        return;
    const char *why = no_open_refusal(&r->cfg);
    if (r->init.no_open) {
        log_info("open=none: files open and close with no round trip; fcntl and flock "
                 "locks are this guest's alone");
        return;
    }
    if (!why)
        why = r->init.writeback ? "the host asked for a writeback cache"
                                : "the kernel does not offer FUSE_NO_OPEN_SUPPORT";
    log_warn("open=none is not in force (%s): opens as with open=auto", why);
}

/* Allocates everything; on failure the caller exits, so nothing is freed. */
static struct relay *relay_alloc(const struct relay_config *cfg)
{
    struct relay *r = calloc(1, sizeof(*r) + cfg->queues * sizeof(r->fdq[0]));
    if (!r)
        return NULL;
    r->cfg = *cfg;
    log_open_mode(cfg);
    r->init.want_no_open = cfg->open_mode == RELAY_OPEN_NONE && !no_open_refusal(cfg);
    r->init.host_checks_permissions = cfg->host_checks_permissions;
    pending_init(&r->pending);
    bool quiet = cfg->terms.features & FSB_TERMS_QUIET_CLOSE;
    if (cfg->flush_shortcut && !(r->flushes = flush_shortcut_new(quiet)))
        return NULL;
    if (cfg->attr_notes && !(r->notes = attr_notes_new()))
        return NULL;
    if (cfg->caps_shortcut && !(r->caps = caps_shortcut_new()))
        return NULL;
    if (cfg->missing_names && !(r->missing = missing_names_new()))
        return NULL;
    if (relay_opens_lazily(cfg) && !(r->lazy = lazy_open_new(cfg->terms.open_flags)))
        return NULL;
    pthread_mutex_init(&r->state_lock, NULL);
    pthread_cond_init(&r->state_changed, NULL);
    r->conns = calloc(RELAY_MAX_CONNS, sizeof(r->conns[0]));
    if (!r->conns || conn_init(r, &r->conns[0], cfg->sock) < 0)
        return NULL;
    if (!(r->forgets = held_forgets_new(send_held, &r->conns[0])))
        return NULL;
    r->nconns = 1;
    for (unsigned i = 0; i < cfg->queues; i++) {
        r->fdq[i] = (struct fd_queue){ .relay = r, .conn = &r->conns[0] };
        r->fdq[i].dest = (struct reply_dest){ .deliver = deliver_to_fd, .dev_fd = -1,
                                              .to_dev_fd = true };
        /* The kernel refuses reads into less than FUSE_MIN_READ_BUFFER (the
         * handshake makes sure the frame is not smaller) or less than a
         * WRITE of max_write (init_filter caps it to the frame).  In turn it
         * never hands us a request larger than the buffer: it fails those
         * itself (E2BIG for an oversized SETXATTR), so every request fits
         * in one frame. */
        r->fdq[i].buf = malloc(cfg->max_frame);
        if (!r->fdq[i].buf)
            return NULL;
    }
    return r;
}

/* A ring entry's payload buffer: at least the kernel's largest payload,
 * max(FUSE_MIN_READ_BUFFER, max_write, max_pages pages), which
 * init_filter keeps within the frame (or the kernel's default of 32
 * pages). */
static size_t ring_payload_size(uint32_t max_frame)
{
    size_t size = (size_t)KERNEL_DEFAULT_MAX_PAGES * (size_t)sysconf(_SC_PAGESIZE);
    if (size < FUSE_MIN_READ_BUFFER)
        size = FUSE_MIN_READ_BUFFER;
    return size > max_frame ? size : max_frame;
}

/* Creates the io_uring queues, one per possible CPU, before INIT: whether
 * io_uring works decides what the INIT reply offers the kernel.  Returns
 * 0 (rings made, or fd queues only under uring=auto) or -errno for
 * uring=on. */
static int start_rings(struct relay *r)
{
    int n = uring_queue_count();
    int err = n < 0 ? n : 0;
    if (!err && !(r->rings = calloc((size_t)n, sizeof(r->rings[0]))))
        err = -ENOMEM;
    for (int i = 0; !err && i < n; i++) {
        struct uring_queue_config qc = {
            .qid = (unsigned)i,
            .dev_fd = r->cfg.session_fd,
            .payload_size = ring_payload_size(r->cfg.max_frame),
            .poll_us = r->cfg.poll_us,
        };
        err = uring_queue_create(&qc, &r->rings[i]);
        if (r->rings[i])
            r->nrings = (unsigned)i + 1;
    }
    if (!err) {
        r->init.want_uring = true;
        return 0;
    }
    for (unsigned i = 0; i < r->nrings; i++)
        uring_queue_discard(r->rings[i]);
    r->nrings = 0;
    if (r->cfg.uring == RELAY_URING_ON) {
        log_error("uring=on: cannot set up io_uring: %s", strerror(-err));
        return err;
    }
    log_info("io_uring unavailable (%s): using /dev/fuse queues", strerror(-err));
    return 0;
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

static void notified(void *arg, const void *msg, size_t len, int result)
{
    host_events_notified(arg, msg, len, result);
}

/* host_events=on: the node table and the echo thread. */
static int start_events(struct relay *r)
{
    if (!r->cfg.host_events)
        return 0;
    if (!(r->nodes = host_nodes_new()))
        return -ENOMEM;
    struct host_events_config hc = { .mountpoint = r->cfg.mountpoint, .nodes = r->nodes,
                                     .conn = &r->conns[0], .writeback = &r->init.writeback };
    return host_events_start(&hc, &r->events);
}

static int start_threads(struct relay *r)
{
    const struct relay_config *cfg = &r->cfg;
    int err = start_events(r);
    if (!err)
        err = notify_queue_start(&r->notify, cfg->session_fd,
                                 r->events ? notified : NULL, r->events);
    for (unsigned i = 0; !err && i < cfg->queues; i++) {
        r->fdq[i].dest.dev_fd = queue_fd(cfg, i);
        err = start_thread(fd_queue_main, &r->fdq[i]);
    }
    if (!err)
        err = start_thread(conn_reader_main, &r->conns[0]);
    if (err)
        log_error("cannot start the relay: %s", strerror(-err));
    return err;
}

int relay_start(const struct relay_config *cfg, struct relay **out)
{
    if (cfg->max_frame < FUSE_MIN_READ_BUFFER || cfg->queues < 1)
        return -EINVAL;
    struct relay *r = relay_alloc(cfg);
    if (!r) {
        log_error("cannot start the relay: %s", strerror(ENOMEM));
        return -ENOMEM;
    }
    *out = r;
    int err = cfg->uring != RELAY_URING_OFF ? start_rings(r) : 0;
    return err ? err : start_threads(r);
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

const char *relay_describe(const struct relay *r)
{
    return r->description;
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
