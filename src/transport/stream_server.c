/*
 * stream_server.c - see stream_server.h.  Only bytes move here: framing,
 * queueing, threads.  What a frame means is the engine's business.
 */
#include "transport/stream_server.h"
#include "common/fdio.h"
#include "common/log.h"
#include "engine/fuse_engine.h"
#include "matchlock/ml_server.h"
#include "transport/stream_hello.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HELLO_TIMEOUT_SEC 10
#define MAX_QUEUED 64 /* requests read but not yet answered, per session */
/* Lock waits (SETLKW) may last until the guest sends the unlock, so they
 * count neither against MAX_QUEUED nor against --threads: up to this many
 * get workers of their own, and the unlock can always be read and run.
 * Beyond them a SETLKW only tries (ENOLCK when the lock is taken). */
#define MAX_LOCK_WAITERS 64
/* The reader's buffer: every request but a large WRITE fits, so most cost
 * one read() and need no allocation when run on the reader. */
#define READ_BUFFER_SIZE (64 * 1024)
/* Transfers and listings up to this size are short enough to run on the
 * reader thread (see may_take_long). */
#define INLINE_IO_MAX (64 * 1024)

struct job {
    struct job *next;
    bool lock_wait;   /* a SETLKW that took a lock-waiter slot */
    size_t len;
    char data[]; /* one FUSE request */
};

/* One guest, as far as the server can tell: the listener it came through
 * (a Firecracker or Cloud Hypervisor VM has a hybrid-vsock socket of its
 * own) and, on AF_VSOCK, its CID. */
struct peer {
    unsigned listener;
    uint32_t cid;              /* VMADDR_CID_ANY when not vsock */
};

struct conn {
    int fd;
    unsigned id;
    const struct stream_server_config *cfg;
    struct fsb_session *session;
    struct fsb_frame_reader frames; /* the reader thread's, after the HELLO */
    pthread_mutex_t send_lock;

    pthread_mutex_t lock;      /* guards everything below */
    pthread_cond_t work;       /* a job was queued, or closing */
    pthread_cond_t space;      /* a job finished */
    struct job *head, *tail;
    unsigned queued;           /* queued + being processed */
    unsigned waiting;          /* queued, not yet taken by a worker */
    unsigned workers, idle;
    unsigned lock_waiters;     /* workers in a SETLKW (see MAX_LOCK_WAITERS) */
    bool closing;
    pthread_t *threads;

    struct peer peer;          /* who connected, for --max-sessions-per-peer */
    struct conn *next;         /* in the server's list */
};

/* The server's live connections, so that a stop can end them. */
static pthread_mutex_t conns_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t conns_gone = PTHREAD_COND_INITIALIZER;
static struct conn *conns;
static unsigned nconns;

static void send_reply(struct conn *c, void *buf, size_t len)
{
    struct iovec iov = { buf, len };
    pthread_mutex_lock(&c->send_lock);
    int err = fsb_writev_full(c->fd, &iov, 1);
    pthread_mutex_unlock(&c->send_lock);
    if (err && err != -EPIPE && err != -ECONNRESET)
        log_warn("session %u: sending a reply: %s", c->id, strerror(-err));
}

/* Only a worker holding a lock-waiter slot may wait for a lock; anywhere
 * else a SETLKW only tries (see fsb_engine_process_no_wait). */
static void process(struct conn *c, void *frame, size_t len, void *reply, bool may_wait)
{
    struct iovec in = { frame, len };
    struct iovec out = { reply, c->session->max_frame };
    size_t n = may_wait ? fsb_engine_process(c->session, &in, 1, &out, 1)
                        : fsb_engine_process_no_wait(c->session, &in, 1, &out, 1);
    if (n)
        send_reply(c, reply, n);
}

static uint32_t job_opcode(const struct job *j)
{
    struct fuse_in_header h;
    memcpy(&h, j->data, sizeof(h)); /* read_frame() checked the length */
    return h.opcode;
}

static void maybe_add_worker(struct conn *c);

/* Called with c->lock held: a SETLKW leaves the counts of queued requests
 * and workers, and another worker may start for what waits behind it. */
static void begin_lock_wait(struct conn *c, struct job *j)
{
    if (job_opcode(j) != FUSE_SETLKW || c->lock_waiters >= MAX_LOCK_WAITERS)
        return;
    j->lock_wait = true;
    c->lock_waiters++;
    c->queued--;
    pthread_cond_signal(&c->space);
    maybe_add_worker(c);
}

static struct job *next_job(struct conn *c)
{
    pthread_mutex_lock(&c->lock);
    c->idle++;
    while (!c->head && !c->closing)
        pthread_cond_wait(&c->work, &c->lock);
    c->idle--;
    struct job *j = c->head;
    if (j) {
        c->waiting--;
        c->head = j->next;
        if (!c->head)
            c->tail = NULL;
        begin_lock_wait(c, j);
    }
    pthread_mutex_unlock(&c->lock);
    return j;
}

static void job_done(struct conn *c, struct job *j)
{
    pthread_mutex_lock(&c->lock);
    if (j->lock_wait) {
        c->lock_waiters--;
    } else {
        c->queued--;
        pthread_cond_signal(&c->space);
    }
    pthread_mutex_unlock(&c->lock);
    free(j);
}

static void *worker_main(void *arg)
{
    struct conn *c = arg;
    void *reply = malloc(c->session->max_frame);
    struct job *j;
    while ((j = next_job(c))) {
        if (reply)
            process(c, j->data, j->len, reply, j->lock_wait);
        job_done(c, j);
    }
    free(reply);
    return NULL;
}

/* Called with c->lock held.  A new worker starts when the jobs not yet
 * taken outnumber the idle workers: busy ones may be waiting for locks, and
 * a woken worker counts as idle until it takes its job. */
static void maybe_add_worker(struct conn *c)
{
    if (c->waiting <= c->idle || c->workers - c->lock_waiters >= c->cfg->max_workers)
        return;
    if (pthread_create(&c->threads[c->workers], NULL, worker_main, c) == 0)
        c->workers++;
}

static void enqueue(struct conn *c, struct job *j)
{
    pthread_mutex_lock(&c->lock);
    while (c->queued >= MAX_QUEUED && !c->closing)
        pthread_cond_wait(&c->space, &c->lock);
    c->queued++;
    c->waiting++;
    if (c->tail)
        c->tail->next = j;
    else
        c->head = j;
    c->tail = j;
    maybe_add_worker(c);
    pthread_cond_signal(&c->work);
    pthread_mutex_unlock(&c->lock);
}

static struct job *job_new(size_t len)
{
    struct job *j = malloc(sizeof(*j) + len);
    if (j)
        *j = (struct job){ .len = len };
    return j;
}

/* One request as read: in the reader's buffer (job NULL; valid until the
 * next read), or in a job of its own when larger than that buffer. */
struct frame {
    void *data;
    size_t len;
    struct job *job;
};

/* Reads the next request into F.  Returns false at the end of the session
 * (after logging why, if it was not a plain disconnect). */
static bool read_frame(struct conn *c, struct frame *f)
{
    uint32_t len;
    int err = fsb_frame_next_len(&c->frames, &len);
    if (err) {
        if (err != -EPIPE && err != -ECONNRESET)
            log_warn("session %u: read: %s", c->id, strerror(-err));
        return false;
    }
    if (len < sizeof(struct fuse_in_header) || len > c->session->max_frame) {
        log_warn("session %u: frame length %u outside [%zu, %zu]: closing", c->id, len,
                 sizeof(struct fuse_in_header), c->session->max_frame);
        return false;
    }
    *f = (struct frame){ .len = len };
    if (len <= c->frames.cap) {
        err = fsb_frame_take(&c->frames, len, &f->data);
    } else if ((f->job = job_new(len))) {
        f->data = f->job->data;
        err = fsb_frame_take_into(&c->frames, f->data, len);
    } else {
        log_error("session %u: out of memory for a %u-byte frame", c->id, len);
        return false;
    }
    if (err) {
        log_warn("session %u: truncated frame (%s): closing", c->id, strerror(-err));
        free(f->job);
        return false;
    }
    return true;
}

/* The fuse_read_in size of a READ, READDIR or READDIRPLUS; 0 when the
 * frame is too short for one (the engine refuses it). */
static uint32_t read_size(const struct frame *f)
{
    struct fuse_read_in in;
    if (f->len < sizeof(struct fuse_in_header) + sizeof(in))
        return 0;
    memcpy(&in, (const char *)f->data + sizeof(struct fuse_in_header), sizeof(in));
    return in.size;
}

/* Requests with no small bound on their duration: a lock wait lasts until
 * the unlock, a sync until the disk is done, a copy or an allocation may
 * cover gigabytes, and a transfer or listing takes time in proportion to
 * its size.  Everything else is a few system calls on the host. */
static bool may_take_long(const struct frame *f, uint32_t opcode)
{
    switch (opcode) {
    case FUSE_SETLKW: case FUSE_FSYNC: case FUSE_FSYNCDIR: case FUSE_SYNCFS:
    case FUSE_COPY_FILE_RANGE: case FUSE_FALLOCATE:
        return true;
    case FUSE_READ: case FUSE_READDIR: case FUSE_READDIRPLUS:
        return read_size(f) > INLINE_IO_MAX;
    case FUSE_WRITE:
        return f->len > sizeof(struct fuse_in_header) + sizeof(struct fuse_write_in) +
                        INLINE_IO_MAX;
    default:
        return false;
    }
}

/* RELEASE and RELEASEDIR are a close() on the host, and the guest does not
 * wait for them: they come in the same read as the request after them (a
 * program closes a file and opens the next), and a hand-off would cost
 * more than the close. */
static bool only_lets_go(uint32_t opcode)
{
    return opcode == FUSE_RELEASE || opcode == FUSE_RELEASEDIR;
}

/*
 * Which requests run on the reader thread rather than a worker:
 *  - urgent ones (FORGET, INTERRUPT), which must not wait behind others,
 *    and the releases (above);
 *  - INIT, which must finish before anything else is dispatched;
 *  - any request that cannot take long when no other request has arrived
 *    behind it: a guest doing one thing at a time (create, stat, a 4 KiB
 *    read, git status) then pays no thread hand-off, which costs more than
 *    the request itself, while a burst still spreads over the workers.
 *    A request that comes in meanwhile waits for one short request at most.
 *    (The virtio-fs transport runs a lone request on its queue's thread
 *    for the same reason.)
 * The reader's buffer tells whether another request has arrived: each read
 * takes everything the socket holds.
 */
static bool run_inline(const struct conn *c, const struct frame *f)
{
    struct fuse_in_header h;
    memcpy(&h, f->data, sizeof(h));
    if (fsb_engine_is_urgent(h.opcode) || only_lets_go(h.opcode) || !c->session->initialized)
        return true;
    return fsb_frame_buffered(&c->frames) == 0 && !may_take_long(f, h.opcode);
}

/* Runs F here or queues it for a worker.  Returns false when out of
 * memory (the session ends). */
static bool dispatch(struct conn *c, struct frame *f, void *reply)
{
    if (run_inline(c, f)) {
        process(c, f->data, f->len, reply, false);
        free(f->job);
        return true;
    }
    struct job *j = f->job;
    if (!j && (j = job_new(f->len)))
        memcpy(j->data, f->data, f->len);
    if (!j) {
        log_error("session %u: out of memory for a %zu-byte request", c->id, f->len);
        return false;
    }
    enqueue(c, j);
    return true;
}

static void reader_loop(struct conn *c)
{
    void *reply = malloc(c->session->max_frame);
    struct frame f;
    if (!reply || fsb_frame_reader_init(&c->frames, c->fd, READ_BUFFER_SIZE) < 0) {
        log_error("session %u: out of memory", c->id);
        free(reply);
        return;
    }
    while (read_frame(c, &f) && dispatch(c, &f, reply))
        ;
    fsb_frame_reader_free(&c->frames);
    free(reply);
}

/* Marks C as closing: waiting locks give up, and a reader waiting for
 * queue space stops waiting. */
static void conn_begin_close(struct conn *c)
{
    pthread_mutex_lock(&c->lock);
    if (c->session)
        fsb_session_interrupt_all(c->session);
    c->closing = true;
    pthread_cond_broadcast(&c->work);
    pthread_cond_broadcast(&c->space);
    pthread_mutex_unlock(&c->lock);
}

static void stop_workers(struct conn *c)
{
    conn_begin_close(c);
    for (unsigned i = 0; i < c->workers; i++)
        pthread_join(c->threads[i], NULL);
    /* Workers drain the queue before they see closing; nothing is left. */
}

static const struct fsb_export *find_export(const struct stream_server_config *cfg,
                                            const char *name)
{
    if (!*name)
        return cfg->nexports ? &cfg->exports[0] : NULL;
    for (unsigned i = 0; i < cfg->nexports; i++)
        if (strcmp(cfg->exports[i].name, name) == 0)
            return &cfg->exports[i];
    return NULL;
}

static int send_hello_reply(struct conn *c, uint32_t status, uint32_t max_frame)
{
    struct fsb_hello_reply r = { .version = FSB_STREAM_VERSION, .status = status,
                                 .max_frame = max_frame };
    uint8_t buf[FSB_HELLO_REPLY_SIZE];
    fsb_hello_reply_encode(&r, buf);
    return fsb_write_full(c->fd, buf, sizeof(buf));
}

/* Reads and checks the HELLO.  Returns 0 with *exp set, or the errno to
 * send back (negative), or 1 when the peer must just be dropped, or 2 for
 * a matchlock client (its first byte, a zero, is read). */
/* Reads LEN bytes unless DEADLINE (CLOCK_MONOTONIC) passes first: the
 * whole HELLO has one time limit, so a peer trickling a byte at a time
 * holds a session slot no longer than a silent one. */
static int read_by(int fd, void *buf, size_t len, const struct timespec *deadline)
{
    uint8_t *p = buf;
    while (len > 0) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long ms = (deadline->tv_sec - now.tv_sec) * 1000 + (deadline->tv_nsec - now.tv_nsec) / 1000000;
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        if (ms <= 0 || poll(&pfd, 1, (int)ms) == 0)
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

static int read_hello_bytes(struct conn *c, void *buf, size_t len, const struct timespec *deadline)
{
    int err = read_by(c->fd, buf, len, deadline);
    if (err == -ETIMEDOUT)
        log_warn("session %u: no complete HELLO within %d s: closing", c->id, HELLO_TIMEOUT_SEC);
    return err;
}

static int read_hello(struct conn *c, struct fsb_hello *h, const struct fsb_export **exp)
{
    uint8_t buf[FSB_HELLO_SIZE];
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += HELLO_TIMEOUT_SEC; /* a silent or slow peer holds no slot */
    if (read_hello_bytes(c, buf, 1, &deadline) < 0)
        return 1;
    if (buf[0] == 0)
        return 2; /* a matchlock frame length: served by handshake() */
    if (read_hello_bytes(c, buf + 1, sizeof(buf) - 1, &deadline) < 0)
        return 1;
    int err = fsb_hello_decode(buf, h);
    if (err == -EPROTO) {
        log_warn("session %u: not a fsbridge HELLO: closing", c->id);
        return 1;
    }
    if (err)
        return err;
    if (read_hello_bytes(c, h->name, h->name_len, &deadline) < 0)
        return 1;
    if (fsb_hello_check_name(h) < 0)
        return -EINVAL;
    if (h->version < 1 || h->byte_order != fsb_native_byte_order() ||
        h->max_frame < FSB_MIN_FRAME)
        return -EPROTO;
    *exp = find_export(c->cfg, h->name);
    return *exp ? 0 : -ENOENT;
}

/* The handshake: creates c->session.  Returns false to drop the peer. */
static bool handshake(struct conn *c)
{
    struct fsb_hello h;
    const struct fsb_export *exp = NULL;
    int r = read_hello(c, &h, &exp);
    if (r == 2) {
        static const uint8_t first_byte = 0;
        ml_serve_connection(c->fd, c->id, c->cfg->exports, c->cfg->nexports, &first_byte, 1);
        return false;
    }
    if (r == 1)
        return false;
    size_t max_frame = FSB_DEFAULT_MAX_FRAME;
    if (!r && h.max_frame < max_frame)
        max_frame = h.max_frame;
    if (!r) {
        struct fsb_session *s = fsb_session_new(exp, max_frame, &r);
        if (!s)
            log_error("session %u: %s", c->id, strerror(-r));
        pthread_mutex_lock(&c->lock); /* end_all_sessions may look at it */
        c->session = s;
        pthread_mutex_unlock(&c->lock);
    }
    if (r) {
        log_warn("session %u: refused (export '%s'): %s", c->id, h.name, strerror(-r));
        send_hello_reply(c, (uint32_t)-r, 0);
        return false;
    }
    if (send_hello_reply(c, 0, (uint32_t)max_frame) < 0)
        return false;
    log_info("session %u: export '%s' (%s)", c->id, exp->name, exp->path);
    return true;
}

static void conn_register(struct conn *c)
{
    pthread_mutex_lock(&conns_lock);
    c->next = conns;
    conns = c;
    nconns++;
    pthread_mutex_unlock(&conns_lock);
}

static void conn_unregister(struct conn *c)
{
    pthread_mutex_lock(&conns_lock);
    struct conn **p = &conns;
    while (*p != c)
        p = &(*p)->next;
    *p = c->next;
    nconns--;
    pthread_cond_broadcast(&conns_gone);
    pthread_mutex_unlock(&conns_lock);
}

static void conn_free(struct conn *c)
{
    fsb_session_free(c->session);
    close(c->fd);
    free(c->threads);
    pthread_mutex_destroy(&c->lock);
    pthread_mutex_destroy(&c->send_lock);
    pthread_cond_destroy(&c->work);
    pthread_cond_destroy(&c->space);
    free(c);
}

static void *conn_main(void *arg)
{
    struct conn *c = arg;
    if (handshake(c)) {
        reader_loop(c);
        stop_workers(c);
        log_info("session %u: ended", c->id);
    }
    conn_unregister(c);
    conn_free(c);
    return NULL;
}

static struct conn *conn_new(int fd, const struct stream_server_config *cfg, unsigned id,
                             struct peer peer)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->threads = calloc(cfg->max_workers + MAX_LOCK_WAITERS, sizeof(*c->threads));
    if (!c->threads) {
        free(c);
        return NULL;
    }
    c->fd = fd;
    c->id = id;
    c->cfg = cfg;
    c->peer = peer;
    pthread_mutex_init(&c->lock, NULL);
    pthread_mutex_init(&c->send_lock, NULL);
    pthread_cond_init(&c->work, NULL);
    pthread_cond_init(&c->space, NULL);
    return c;
}

/*
 * Out of fds, a pending connection cannot be accepted and poll() reports it
 * again at once.  A spare fd, kept open for this, is given up to accept the
 * connection and close it right away: the peer learns at once, the loop
 * does not spin, and the spare is taken back.  Logged once per episode.
 */
static int spare_fd = -1;

static void shed_connection(int lfd)
{
    static bool said;
    if (!said)
        log_warn("out of file descriptors: refusing new connections");
    said = true;
    if (spare_fd >= 0)
        close(spare_fd);
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0)
        close(fd);
    spare_fd = eventfd(0, EFD_CLOEXEC); /* no path: the sandbox has no /dev */
}

static unsigned sessions_of(struct peer p)
{
    unsigned n = 0;
    for (struct conn *c = conns; c; c = c->next)
        n += c->peer.listener == p.listener && c->peer.cid == p.cid;
    return n;
}

/* Why a new session of peer P must be refused, or NULL. */
static const char *over_limit(const struct stream_server_config *cfg, struct peer p)
{
    pthread_mutex_lock(&conns_lock);
    const char *why = nconns >= cfg->max_sessions ? "too many sessions"
                      : sessions_of(p) >= cfg->max_sessions_per_peer
                          ? "too many sessions from this peer"
                          : NULL;
    pthread_mutex_unlock(&conns_lock);
    return why;
}

static void accept_one(int lfd, unsigned listener, const struct stream_server_config *cfg)
{
    static unsigned next_id = 1;
    struct sockaddr_storage sa;
    socklen_t salen = sizeof(sa);
    int fd = accept4(lfd, (struct sockaddr *)&sa, &salen, SOCK_CLOEXEC);
    if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE)
            shed_connection(lfd);
        else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
            log_warn("accept: %s", strerror(errno));
        return;
    }
    struct peer peer = { .listener = listener, .cid = VMADDR_CID_ANY };
    if (sa.ss_family == AF_VSOCK)
        peer.cid = ((struct sockaddr_vm *)&sa)->svm_cid;
    const char *why = over_limit(cfg, peer);
    struct conn *c = why ? NULL : conn_new(fd, cfg, next_id++, peer);
    if (!c) {
        log_warn("refusing a connection: %s", why ? why : "out of memory");
        close(fd);
        return;
    }
    conn_register(c);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, conn_main, c) != 0) {
        log_warn("refusing a connection: cannot start a thread");
        conn_unregister(c);
        conn_free(c);
    }
    pthread_attr_destroy(&attr);
}

/* Ends every session: shutting the sockets down wakes their readers. */
static void end_all_sessions(void)
{
    pthread_mutex_lock(&conns_lock);
    for (struct conn *c = conns; c; c = c->next) {
        shutdown(c->fd, SHUT_RDWR);
        conn_begin_close(c);
    }
    while (nconns > 0)
        pthread_cond_wait(&conns_gone, &conns_lock);
    pthread_mutex_unlock(&conns_lock);
}

int stream_server_run(const struct stream_server_config *cfg)
{
    struct pollfd *pfds = calloc(cfg->nlisten + 1, sizeof(*pfds));
    if (!pfds)
        return -ENOMEM;
    for (unsigned i = 0; i < cfg->nlisten; i++)
        pfds[i] = (struct pollfd){ .fd = cfg->listen_fds[i], .events = POLLIN };
    pfds[cfg->nlisten] = (struct pollfd){ .fd = cfg->stop_fd, .events = POLLIN };
    spare_fd = eventfd(0, EFD_CLOEXEC); /* no path: the sandbox has no /dev */
    for (;;) {
        if (poll(pfds, cfg->nlisten + 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (pfds[cfg->nlisten].revents)
            break;
        for (unsigned i = 0; i < cfg->nlisten; i++)
            if (pfds[i].revents & POLLIN)
                accept_one(pfds[i].fd, i, cfg);
    }
    free(pfds);
    end_all_sessions();
    return 0;
}
