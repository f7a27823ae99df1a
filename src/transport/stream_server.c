/*
 * stream_server.c - see stream_server.h.  Only bytes move here: framing,
 * queueing, threads.  What a frame means is the engine's business.
 */
#include "transport/stream_server.h"
#include "common/fdio.h"
#include "common/halt_poll.h"
#include "common/log.h"
#include "engine/fuse_engine.h"
#include "engine/notify_out.h"
#include "matchlock/ml_server.h"
#include "common/splice_io.h"
#include "transport/peer_rules.h"
#include "transport/read_pipes.h"
#include "transport/stream_hello.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
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
/* Connections one session may have (the first and those that joined it):
 * a client opens one per queue, that is per CPU of the guest. */
#define MAX_SESSION_CONNS 64
/* The reader's buffer: every request but a large WRITE fits, so most cost
 * one read() and need no allocation when run on the reader. */
#define READ_BUFFER_SIZE (64 * 1024)
/* Transfers and listings up to this size are short enough to run on the
 * reader thread (see may_take_long). */
#define INLINE_IO_MAX (64 * 1024)

struct job {
    struct job *next;
    struct job *next_wait; /* in conn.lock_jobs, while lock_wait */
    bool lock_wait;   /* a SETLKW that took a lock-waiter slot */
    size_t len;
    char data[]; /* one FUSE request */
};

/*
 * One guest, as far as the server can tell, and the key of its budgets:
 *  - on AF_VSOCK, its CID, whichever listener (port) it came through: a
 *    CID is one VM;
 *  - on a Unix socket, the listener and the peer's uid (SO_PEERCRED): a
 *    Firecracker or Cloud Hypervisor VM has a hybrid-vsock socket of its
 *    own, through which every connection is that one VM (the VMM's uid),
 *    while on a socket that several local users share each uid is a guest;
 *  - otherwise (an inherited socket of another family) the listener.
 */
enum peer_kind { PEER_LISTENER, PEER_UNIX_UID, PEER_VSOCK_CID };

struct peer {
    enum peer_kind kind;
    unsigned listener;         /* where it connected (a CID's budgets ignore it) */
    uint32_t id;               /* the uid or the CID */
};

/* A guest's budgets, shared by its connections (freed with the last; a
 * session's connections are all its guest's, see find_session). */
struct guest {
    struct fsb_guest budget;
    struct peer peer;
    unsigned conns;            /* under conns_lock */
    struct guest *next;
};

static bool same_peer(struct peer a, struct peer b)
{
    return a.kind == b.kind && a.id == b.id &&
           (a.kind == PEER_VSOCK_CID || a.listener == b.listener);
}

static void peer_name(struct peer p, char *buf, size_t len)
{
    if (p.kind == PEER_VSOCK_CID)
        snprintf(buf, len, "vsock CID %u", p.id);
    else if (p.kind == PEER_UNIX_UID)
        snprintf(buf, len, "uid %u on listener %u", p.id, p.listener);
    else
        snprintf(buf, len, "listener %u", p.listener);
}

/*
 * One FUSE session of a guest: the engine's session (node ids, handles,
 * locks) and the connections that carry it, the one that opened it and
 * those that joined it with its token (protocol version 2).  The counts and
 * flags are guarded by conns_lock.
 */
struct stream_session {
    struct fsb_session *fs;
    unsigned id;               /* the opening connection's, for the log */
    uint8_t token[FSB_SESSION_TOKEN_SIZE];
    struct peer peer;          /* only this guest may join */
    unsigned open;             /* connections still reading: joins allowed while > 0 */
    unsigned refs;             /* connections not yet torn down: freed at 0 */
    bool ready;                /* INIT answered: a join may start at once */
    struct stream_session *next;
};

/* What a connection is, for the limits: a HELLO still being read (bounded
 * so that silent peers cannot hold many threads), the one that opened a
 * session (--max-sessions), or one that joined a session
 * (MAX_SESSION_CONNS).  Each of them is one of its guest's sessions
 * (--guest-max-sessions), from accept on. */
enum conn_kind { CONN_HELLO, CONN_SESSION, CONN_JOINED };

struct conn {
    int fd;
    unsigned id;
    const struct stream_server_config *cfg;
    struct stream_session *ss; /* set by the handshake */
    struct fsb_session *session; /* ss->fs */
    enum conn_kind kind;       /* guarded by conns_lock */
    uint16_t version;          /* its HELLO reply's (a JOIN's may be older than the session's) */
    struct fsb_frame_reader frames; /* the reader thread's, after the HELLO */
    struct fsb_halt_poll poll;      /* the reader's spin before it sleeps */
    pthread_mutex_t send_lock;

    pthread_mutex_t lock;      /* guards everything below */
    pthread_cond_t work;       /* a job was queued, or closing */
    pthread_cond_t space;      /* a job finished */
    struct job *head, *tail;
    unsigned queued;           /* queued + being processed */
    unsigned waiting;          /* queued, not yet taken by a worker */
    unsigned workers, idle;
    unsigned lock_waiters;     /* workers in a SETLKW (see MAX_LOCK_WAITERS) */
    struct job *lock_jobs;     /* their requests, to interrupt if the connection drops */
    bool closing;
    atomic_bool stop_reading;  /* closing, for a reader waiting on its guest */
    atomic_bool no_splice;     /* the stream refused a splice: copy READs */
    bool pinned;               /* the reader runs on the HELLO's CPU (follow_cpu_hint) */
    pthread_t *threads;

    struct peer peer;          /* who connected */
    struct guest *guest;       /* whose budgets it counts on, from accept */
    fsb_export_mask exports;   /* what it may use (peer_rules.h) */
    struct conn *next;         /* in the server's list */
};

/* The server's live connections, so that a stop can end them, and its
 * sessions, so that a connection can join one. */
static pthread_mutex_t conns_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t conns_gone = PTHREAD_COND_INITIALIZER;
static struct conn *conns;
static unsigned nconns;
static struct stream_session *sessions;
static struct guest *guests;
/* The CPUs the daemon may run on (its affinity at start: taskset, a
 * cgroup's cpuset), the only ones a CPU hint may name. */
static cpu_set_t server_cpus;

/* The data of a reply that the engine left in a pipe, after the rest of
 * the reply went from BUF.  A stream that takes no splices (EINVAL before
 * the first byte: some character devices) gets the data copied into BUF
 * and written, and its later READs are copied from the start.  *EMPTY:
 * false if bytes may be left in the pipe. */
static int send_piped(struct conn *c, struct fsb_pipe *p, void *buf, size_t held, bool *empty)
{
    size_t moved;
    int err = fsb_splice_out(p, c->fd, held, SPLICE_F_MOVE, &moved);
    if (err == -EINVAL && moved == 0) {
        atomic_store(&c->no_splice, true);
        err = fsb_pipe_drain(p, buf, held);
        *empty = !err;
        return err ? err : fsb_write_full(c->fd, buf, held);
    }
    *empty = !err || !fsb_pipe_drain(p, NULL, held - moved);
    return err;
}

/* Sends the CNT buffers of IOV in one writev, under one hold of the send
 * lock, so that another worker's reply cannot come between them.  They
 * count on their guest's queued bytes while they are being sent: a guest
 * that stops reading holds them until it reads (or goes).  The last
 * LEND->held bytes of the last buffer wait in LEND->pipe and follow it. */
static void send_reply(struct conn *c, struct iovec *iov, int cnt, struct fsb_reply_pipe *lend)
{
    size_t held = lend->pipe ? lend->held : 0;
    size_t len = 0;
    for (int i = 0; i < cnt; i++)
        len += iov[i].iov_len;
    iov[cnt - 1].iov_len -= held;
    /* where the piped bytes go when the stream takes no splice (before
     * fsb_writev_full moves the iovecs on) */
    char *tail = (char *)iov[cnt - 1].iov_base + iov[cnt - 1].iov_len;
    bool empty = true;
    fsb_guest_charge(&c->guest->budget, len);
    pthread_mutex_lock(&c->send_lock);
    int err = fsb_writev_full(c->fd, iov, cnt);
    if (held && !err)
        err = send_piped(c, lend->pipe, tail, held, &empty);
    else if (held)
        empty = !fsb_pipe_drain(lend->pipe, NULL, held);
    pthread_mutex_unlock(&c->send_lock);
    if (lend->pipe)
        read_pipe_give(lend->pipe, empty);
    fsb_guest_give(&c->guest->budget, FSB_BUDGET_QUEUED, len);
    if (err && err != -EPIPE && err != -ECONNRESET)
        log_warn("session %u: sending a reply: %s", c->id, strerror(-err));
}

/* What one request sends, in this order: the invalidation of attributes
 * it made stale, its attribute notes, its empty-directory note, its
 * reply.  Every such message goes before the reply: the guest's relay
 * hands the invalidation to the kernel before the reply, so the caller
 * sees the new attributes once its call returns, and it has the notes by
 * the time the kernel, having the reply, asks for the attributes or for
 * a name in the new directory. */
struct outgoing {
    struct iovec iov[1 + FSB_MAX_ATTR_NOTES + 1 + 1];
    int cnt;
    unsigned char inval[FSB_INVAL_ATTRS_MSG_SIZE];
    unsigned char notes[FSB_MAX_ATTR_NOTES][FSB_ATTR_NOTE_MSG_SIZE];
    unsigned char empty_dir[FSB_EMPTY_DIR_NOTE_MSG_SIZE];
};

static void add_part(struct outgoing *o, void *buf, size_t len)
{
    o->iov[o->cnt++] = (struct iovec){ buf, len };
}

/* Gathers into O what LEND asks to send before the reply of N bytes in
 * REPLY (none when N is 0), then the reply. */
static void gather(struct outgoing *o, const struct fsb_reply_pipe *lend, void *reply, size_t n)
{
    o->cnt = 0;
    if (lend->stale_attrs) {
        fsb_inval_attrs_msg(lend->stale_attrs, o->inval);
        add_part(o, o->inval, sizeof(o->inval));
    }
    for (unsigned i = 0; i < lend->nnotes; i++) {
        fsb_attr_note_encode(&lend->notes[i], o->notes[i]);
        add_part(o, o->notes[i], sizeof(o->notes[i]));
    }
    if (lend->has_empty_dir) {
        fsb_empty_dir_note_encode(&lend->empty_dir, o->empty_dir);
        add_part(o, o->empty_dir, sizeof(o->empty_dir));
    }
    if (n)
        add_part(o, reply, n);
}

static struct fsb_pipe *take_read_pipe(struct fsb_reply_pipe *rp, size_t size, off_t offset)
{
    struct conn *c = rp->arg;
    return atomic_load(&c->no_splice) ? NULL : read_pipe_take(size, offset);
}

/* The session takes notes from its first HELLO's version; a connection
 * that joined it with an older one gets none its version does not know
 * (its client would hand them to the kernel). */
static void known_notes_only(const struct conn *c, struct fsb_reply_pipe *lend)
{
    if (c->version < FSB_STREAM_VERSION_TERMS)
        lend->nnotes = 0;
    if (c->version < FSB_STREAM_VERSION_EMPTY_DIRS ||
        (c->version < FSB_STREAM_VERSION_BOUNDED_DIRS &&
         (lend->empty_dir.flags & FSB_EMPTY_DIR_BOUNDED)))
        lend->has_empty_dir = false;
}

/* Only a worker holding a lock-waiter slot may wait for a lock; anywhere
 * else a SETLKW only tries (see fsb_engine_process_no_wait). */
static void process(struct conn *c, void *frame, size_t len, void *reply, bool may_wait)
{
    struct iovec in = { frame, len };
    struct iovec out = { reply, c->session->max_frame };
    struct fsb_reply_pipe lend = { .take = take_read_pipe, .arg = c };
    size_t n = fsb_engine_process_lent(c->session, &in, 1, &out, 1, may_wait, &lend);
    if (!n && lend.pipe) { /* (a READ always has a reply) */
        read_pipe_give(lend.pipe, true);
        lend.pipe = NULL;
    }
    known_notes_only(c, &lend);
    struct outgoing o;
    gather(&o, &lend, reply, n);
    if (o.cnt)
        send_reply(c, o.iov, o.cnt, &lend);
}

static struct fuse_in_header job_header(const struct job *j)
{
    struct fuse_in_header h;
    memcpy(&h, j->data, sizeof(h)); /* read_frame() checked the length */
    return h;
}

static void maybe_add_worker(struct conn *c);
static bool add_worker(struct conn *c);

/* Called with c->lock held: a SETLKW leaves the counts of queued requests
 * and workers, and another worker may start for what waits behind it.  It
 * waits only if a worker is left for the unlock (another one, or a new one
 * within the guest's thread budget); otherwise it only tries. */
static void begin_lock_wait(struct conn *c, struct job *j)
{
    if (job_header(j).opcode != FUSE_SETLKW || c->lock_waiters >= MAX_LOCK_WAITERS ||
        c->closing)
        return;
    if (c->workers - c->lock_waiters <= 1 && !add_worker(c))
        return;
    j->lock_wait = true;
    j->next_wait = c->lock_jobs;
    c->lock_jobs = j;
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
        struct job **p = &c->lock_jobs;
        while (*p != j)
            p = &(*p)->next_wait;
        *p = j->next_wait;
        c->lock_waiters--;
        pthread_cond_broadcast(&c->space); /* a dropped connection waits for these */
    } else {
        c->queued--;
        pthread_cond_signal(&c->space);
    }
    pthread_mutex_unlock(&c->lock);
    fsb_guest_give(&c->guest->budget, FSB_BUDGET_QUEUED, j->len);
    free(j);
}

static void *worker_main(void *arg)
{
    struct conn *c = arg;
    /* Workers take the requests that arrive together: they may run on
     * any CPU, not on the one of the reader they were started from. */
    if (c->pinned)
        sched_setaffinity(0, sizeof(server_cpus), &server_cpus);
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

/* Called with c->lock held.  Starts one worker, if the guest's thread
 * budget has room for it. */
static bool add_worker(struct conn *c)
{
    if (c->workers >= c->cfg->max_workers + MAX_LOCK_WAITERS ||
        fsb_guest_take(&c->guest->budget, FSB_BUDGET_THREADS, 1) < 0)
        return false;
    if (pthread_create(&c->threads[c->workers], NULL, worker_main, c) != 0) {
        fsb_guest_give(&c->guest->budget, FSB_BUDGET_THREADS, 1);
        return false;
    }
    c->workers++;
    return true;
}

/* Called with c->lock held.  A new worker starts when the jobs not yet
 * taken outnumber the idle workers: busy ones may be waiting for locks, and
 * a woken worker counts as idle until it takes its job. */
static void maybe_add_worker(struct conn *c)
{
    if (c->waiting <= c->idle || c->workers - c->lock_waiters >= c->cfg->max_workers)
        return;
    add_worker(c);
}

/* True if C has a worker, or could start one: a connection whose guest
 * has no thread to spare runs its requests on its reader. */
static bool has_worker(struct conn *c)
{
    pthread_mutex_lock(&c->lock);
    bool ok = c->workers > 0 || add_worker(c);
    pthread_mutex_unlock(&c->lock);
    return ok;
}

/* Queues J for a worker; its bytes count on the guest until it is done. */
static void enqueue(struct conn *c, struct job *j)
{
    fsb_guest_charge(&c->guest->budget, j->len);
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
    if (run_inline(c, f) || !has_worker(c)) {
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

/* Once INIT has been answered on the opening connection, others may join
 * (a joined connection carries no INIT of its own).  Returns true once
 * that is so; INIT ran on this thread, so reading initialized is safe. */
static bool session_mark_ready(struct conn *c)
{
    if (!c->session->initialized)
        return false;
    pthread_mutex_lock(&conns_lock);
    c->ss->ready = true;
    pthread_mutex_unlock(&conns_lock);
    return true;
}

/* Backpressure: while the guest has more request and reply bytes in
 * flight than its budget (it does not read its replies, or sends faster
 * than they run), its readers read nothing more.  False when closing. */
static bool wait_for_room(struct conn *c)
{
    fsb_guest_wait_room(&c->guest->budget, &c->stop_reading);
    return !atomic_load(&c->stop_reading);
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
    fsb_halt_poll_init(&c->poll, c->cfg->poll_us);
    c->frames.poll = &c->poll;
    bool ready = c->kind == CONN_JOINED;
    while (wait_for_room(c) && read_frame(c, &f) && dispatch(c, &f, reply))
        if (!ready)
            ready = session_mark_ready(c);
    fsb_frame_reader_free(&c->frames);
    free(reply);
}

/* Marks C as closing: a reader waiting for queue space stops waiting, and
 * the waiting locks of the whole session give up (the server stops, or C
 * was the session's last connection). */
static void conn_begin_close(struct conn *c, bool whole_session)
{
    pthread_mutex_lock(&c->lock);
    if (c->session && whole_session)
        fsb_session_interrupt_all(c->session);
    c->closing = true;
    pthread_cond_broadcast(&c->work);
    pthread_cond_broadcast(&c->space);
    pthread_mutex_unlock(&c->lock);
    atomic_store(&c->stop_reading, true);
    fsb_guest_wake_all(&c->guest->budget);
}

/* Called with c->lock held, when C dropped but its session goes on: only
 * C's own lock waits give up (their replies have nowhere to go).  A wait
 * may not have started yet when it is interrupted, and the session
 * remembers only the last few early interrupts, so this repeats until
 * every lock waiter of C is done. */
static void interrupt_own_waits(struct conn *c)
{
    while (c->lock_waiters > 0) {
        for (struct job *j = c->lock_jobs; j; j = j->next_wait)
            fsb_session_interrupt(c->session, job_header(j).unique);
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        t.tv_nsec += 20 * 1000000;
        if (t.tv_nsec >= 1000000000) {
            t.tv_sec++;
            t.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&c->space, &c->lock, &t);
    }
}

static void stop_workers(struct conn *c, bool whole_session)
{
    conn_begin_close(c, whole_session);
    if (!whole_session) {
        pthread_mutex_lock(&c->lock);
        interrupt_own_waits(c);
        pthread_mutex_unlock(&c->lock);
    }
    for (unsigned i = 0; i < c->workers; i++)
        pthread_join(c->threads[i], NULL);
    fsb_guest_give(&c->guest->budget, FSB_BUDGET_THREADS, c->workers);
    /* Workers drain the queue before they see closing, but the server's
     * stop sets closing from another thread: the reader may queue one last
     * job after the workers left.  Nobody will answer it now. */
    for (struct job *j = c->head, *next; j; j = next) {
        next = j->next;
        fsb_guest_give(&c->guest->budget, FSB_BUDGET_QUEUED, j->len);
        free(j);
    }
    c->head = c->tail = NULL;
}

/* The export a HELLO names, among those C's peer may use (""; the first
 * of them); NULL for any other, which is answered as an unknown one. */
static const struct fsb_export *find_export(const struct conn *c, const char *name)
{
    const struct stream_server_config *cfg = c->cfg;
    for (unsigned i = 0; i < cfg->nexports; i++)
        if (c->exports >> i & 1 && (!*name || strcmp(cfg->exports[i].name, name) == 0))
            return &cfg->exports[i];
    return NULL;
}

/* The version a reply speaks: the smaller of the client's and ours (a
 * version-0 HELLO is refused in our own). */
static uint16_t reply_version(const struct fsb_hello *h)
{
    return h->version && h->version < FSB_STREAM_VERSION ? h->version : FSB_STREAM_VERSION;
}

/* What the session of C lets its client do in its stead (stream_hello.h),
 * in a reply of VERSION (a JOIN may speak an older one than the session's
 * first HELLO: it gets no term it does not know). */
static struct fsb_session_terms session_terms(const struct conn *c, uint16_t version)
{
    const struct fsb_session *s = c->ss->fs;
    uint32_t features = (s->coherent ? FSB_TERMS_PUSHES : 0) |
                        (s->lazy ? FSB_TERMS_LAZY_OPEN : 0) |
                        (s->export->close_quiet ? FSB_TERMS_QUIET_CLOSE : 0) |
                        (s->no_open ? FSB_TERMS_NO_OPEN : 0);
    return (struct fsb_session_terms){
        .features = features & fsb_session_terms_known(version),
        .open_flags = fsb_engine_file_open_flags(s),
    };
}

/* A success reply from version 2 on carries the session's token, from
 * version 4 on its terms. */
static int send_hello_reply(struct conn *c, const struct fsb_hello *h, uint32_t status,
                            uint32_t max_frame)
{
    struct fsb_hello_reply r = { .version = reply_version(h), .status = status,
                                 .max_frame = max_frame };
    uint8_t buf[FSB_HELLO_REPLY_SIZE + FSB_SESSION_TOKEN_SIZE + FSB_SESSION_TERMS_SIZE];
    fsb_hello_reply_encode(&r, buf);
    size_t len = FSB_HELLO_REPLY_SIZE;
    if (status == 0 && r.version >= FSB_STREAM_VERSION_JOIN) {
        memcpy(buf + len, c->ss->token, FSB_SESSION_TOKEN_SIZE);
        len += FSB_SESSION_TOKEN_SIZE;
    }
    if (status == 0 && r.version >= FSB_STREAM_VERSION_TERMS) {
        struct fsb_session_terms t = session_terms(c, r.version);
        fsb_session_terms_encode(&t, buf + len);
        len += FSB_SESSION_TERMS_SIZE;
    }
    return fsb_write_full(c->fd, buf, len);
}

static int read_hello_bytes(struct conn *c, void *buf, size_t len, const struct timespec *deadline)
{
    int err = fsb_read_full_by(c->fd, buf, len, deadline);
    if (err == -ETIMEDOUT)
        log_warn("session %u: no complete HELLO within %d s: closing", c->id, HELLO_TIMEOUT_SEC);
    return err;
}

/* Reads and checks the HELLO, with its name and (JOIN) token, all of it
 * by DEADLINE (a silent or slow peer holds no slot).  Returns 0 with *exp
 * set, or the errno to send back (negative), or 1 when the peer must just
 * be dropped, or 2 for a matchlock client (its first byte, a zero, is
 * read). */
static int read_hello(struct conn *c, struct fsb_hello *h, const struct fsb_export **exp,
                      const struct timespec *deadline)
{
    uint8_t buf[FSB_HELLO_SIZE];
    if (read_hello_bytes(c, buf, 1, deadline) < 0)
        return 1;
    if (buf[0] == 0)
        return 2; /* a matchlock frame length: served by handshake() */
    if (read_hello_bytes(c, buf + 1, sizeof(buf) - 1, deadline) < 0)
        return 1;
    int err = fsb_hello_decode(buf, h);
    if (err == -EPROTO) {
        log_warn("session %u: not a fsbridge HELLO: closing", c->id);
        return 1;
    }
    if (err)
        return err;
    if (read_hello_bytes(c, h->name, h->name_len, deadline) < 0)
        return 1;
    if ((h->flags & FSB_HELLO_JOIN) &&
        read_hello_bytes(c, h->token, sizeof(h->token), deadline) < 0)
        return 1;
    if (fsb_hello_check_name(h) < 0)
        return -EINVAL;
    if (h->version < 1 || h->byte_order != fsb_native_byte_order() ||
        h->max_frame < FSB_MIN_FRAME)
        return -EPROTO;
    *exp = find_export(c, h->name);
    return *exp ? 0 : -ENOENT;
}

/* Sets c->ss, c->session (the reader's; end_all_sessions may look at it
 * from another thread). */
static void conn_attach(struct conn *c, struct stream_session *ss)
{
    pthread_mutex_lock(&c->lock);
    c->ss = ss;
    c->session = ss->fs;
    pthread_mutex_unlock(&c->lock);
}

/* Host notifications (cache=coherent) go out on the connection that
 * opened the session: any one will do for the guest's relay, which ends
 * when it loses any of them. */
static void send_notification(void *cookie, const void *msg, size_t len)
{
    struct fsb_reply_pipe none = { 0 }; /* no piped payload */
    struct iovec iov = { (void *)msg, len };
    send_reply(cookie, &iov, 1, &none);
}

static void start_notifications(struct conn *c)
{
    if (c->session->export->cache != FSB_CACHE_COHERENT)
        return;
    int err = fsb_notify_out_start(c->session, c->id, send_notification, c);
    if (err)
        log_info("session %u: cache=coherent served as cache=auto (%s)", c->id,
                 err == -ENOTSUP ? "host changes are not tracked" : strerror(-err));
}

/* A new session for C's first HELLO, H.  Returns 0 or -errno. */
static int session_open(struct conn *c, const struct fsb_hello *h, const struct fsb_export *exp,
                        size_t max_frame)
{
    struct stream_session *ss = calloc(1, sizeof(*ss));
    if (!ss)
        return -ENOMEM;
    if (getrandom(ss->token, sizeof(ss->token), 0) != (ssize_t)sizeof(ss->token)) {
        free(ss);
        return -EAGAIN;
    }
    int err;
    ss->fs = fsb_session_new(exp, max_frame, &c->guest->budget, &err);
    /* A client that reads the terms may answer read-only OPENs itself
     * (FSB_TERMS_LAZY_OPEN): its session takes the handles it makes up.
     * An older one never sends them, and virtio-fs sessions never accept
     * them at all. */
    if (ss->fs && reply_version(h) >= FSB_STREAM_VERSION_TERMS &&
        (err = fsb_session_accept_lazy(ss->fs))) {
        fsb_session_free(ss->fs);
        ss->fs = NULL;
    }
    if (!ss->fs) {
        free(ss);
        return err;
    }
    /* and takes attribute notes (stream_hello.h, FSB_NOTIFY_ATTRS); from
     * version 5, fh 0 for a file opened without OPEN (FSB_TERMS_NO_OPEN) */
    ss->fs->attr_notes = reply_version(h) >= FSB_STREAM_VERSION_TERMS;
    ss->fs->empty_dir_notes = reply_version(h) >= FSB_STREAM_VERSION_EMPTY_DIRS;
    ss->fs->bounded_dir_notes = reply_version(h) >= FSB_STREAM_VERSION_BOUNDED_DIRS;
    ss->fs->created_ids = reply_version(h) >= FSB_STREAM_VERSION_CREATED_IDS;
    ss->fs->no_open = reply_version(h) >= FSB_STREAM_VERSION_NO_OPEN;
    ss->id = c->id;
    ss->peer = c->peer;
    ss->open = ss->refs = 1;
    conn_attach(c, ss);
    start_notifications(c);
    pthread_mutex_lock(&conns_lock);
    ss->next = sessions;
    sessions = ss;
    pthread_mutex_unlock(&conns_lock);
    return 0;
}

/* Token comparison in constant time: how long a refusal takes tells a
 * guessing peer nothing about how close it came. */
static bool same_token(const uint8_t *a, const uint8_t *b)
{
    uint8_t diff = 0;
    for (unsigned i = 0; i < FSB_SESSION_TOKEN_SIZE; i++)
        diff |= a[i] ^ b[i];
    return diff == 0;
}

/* A session is joined only by its own guest (the uid or the CID) through
 * the listener it was opened on: a leaked token is of no use to another
 * local user, another VM, or a peer of a listener with other rules. */
static bool may_join(const struct stream_session *ss, const struct conn *c)
{
    return same_peer(ss->peer, c->peer) && ss->peer.listener == c->peer.listener;
}

/* Called with conns_lock held: the live session H's token names, if it
 * may be joined by C for EXP. */
static struct stream_session *find_session(const struct conn *c, const struct fsb_hello *h,
                                           const struct fsb_export *exp)
{
    for (struct stream_session *ss = sessions; ss; ss = ss->next)
        if (same_token(ss->token, h->token))
            return ss->open > 0 && ss->ready && ss->fs->export == exp && may_join(ss, c)
                       ? ss
                       : NULL;
    return NULL;
}

/* Joins C to the session its token names.  Returns 0, -ESTALE (no such
 * live session for this export and this guest, or its INIT is not answered
 * yet), -EMFILE (the session has all its connections), or -EPROTO (C
 * accepts smaller frames than the session's). */
static int session_join(struct conn *c, const struct fsb_hello *h, const struct fsb_export *exp)
{
    pthread_mutex_lock(&conns_lock);
    struct stream_session *ss = find_session(c, h, exp);
    int err = !ss                               ? -ESTALE
              : ss->open >= MAX_SESSION_CONNS   ? -EMFILE
              : h->max_frame < ss->fs->max_frame ? -EPROTO
                                                 : 0;
    if (!err) {
        ss->open++;
        ss->refs++;
        c->kind = CONN_JOINED;
        conn_attach(c, ss);
    }
    pthread_mutex_unlock(&conns_lock);
    return err;
}

/* Called with conns_lock held: the connections of KIND. */
static unsigned count_conns(enum conn_kind kind)
{
    unsigned n = 0;
    for (struct conn *c = conns; c; c = c->next)
        n += c->kind == kind;
    return n;
}

/* Called with conns_lock held: why one more connection of KIND is over
 * --max-sessions, or NULL.  (Per guest, every connection is one of its
 * sessions from accept on: see admit.) */
static const char *over_limit_locked(const struct stream_server_config *cfg, enum conn_kind kind)
{
    return count_conns(kind) >= cfg->max_sessions ? "too many sessions" : NULL;
}

/* C opens a session (native or matchlock): it now counts against
 * --max-sessions, a join does not.  Returns false (logged) when over it:
 * the peer is dropped without a reply. */
static bool claim_session_slot(struct conn *c)
{
    pthread_mutex_lock(&conns_lock);
    const char *why = over_limit_locked(c->cfg, CONN_SESSION);
    if (!why)
        c->kind = CONN_SESSION;
    pthread_mutex_unlock(&conns_lock);
    if (why)
        log_warn("refusing a connection: %s", why);
    return !why;
}

/*
 * A client on this kernel names the CPU its queue of this connection runs
 * on (FSB_HELLO_CPU): its io_uring ring of that CPU.  The reader, which
 * answers most requests itself (run_inline), then runs there too, and the
 * hops between the ring and the reader, both ways, are wake-ups on one CPU
 * instead of cross-CPU ones (bench/README.md, "CPU affinity").  The hint
 * is a guest's word: it decides where this thread runs and nothing else,
 * and one outside the daemon's own CPUs is ignored.  Only the calling
 * thread is moved (sched_setaffinity(0), the one form seccomp allows).
 */
static void follow_cpu_hint(struct conn *c, const struct fsb_hello *h)
{
    int cpu = fsb_hello_cpu_hint(h, &server_cpus);
    if (cpu < 0 || !c->cfg->follow_cpu_hints)
        return;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    c->pinned = sched_setaffinity(0, sizeof(one), &one) == 0;
    if (c->pinned)
        log_debug("session %u: connection %u served on CPU %d", c->ss->id, c->id, cpu);
}

/* The handshake: opens or joins c->ss.  Returns false to drop the peer. */
static bool handshake(struct conn *c)
{
    struct fsb_hello h;
    const struct fsb_export *exp = NULL;
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += HELLO_TIMEOUT_SEC;
    int r = read_hello(c, &h, &exp, &deadline);
    bool join = r == 0 && (h.flags & FSB_HELLO_JOIN);
    if ((r == 2 || (r == 0 && !join)) && !claim_session_slot(c))
        return false;
    if (r == 2) {
        /* matchlock's first frame is its HELLO: the same time limit */
        static const uint8_t first_byte = 0;
        ml_serve_connection(c->fd, c->id, c->cfg->exports, c->cfg->nexports, c->exports,
                            &c->guest->budget, &first_byte, 1, &deadline);
        return false;
    }
    if (r == 1)
        return false;
    size_t max_frame = FSB_DEFAULT_MAX_FRAME;
    if (!r && h.max_frame < max_frame)
        max_frame = h.max_frame;
    if (!r)
        r = join ? session_join(c, &h, exp) : session_open(c, &h, exp, max_frame);
    if (r) {
        log_warn("session %u: refused (export '%s'%s): %s", c->id, h.name,
                 h.flags & FSB_HELLO_JOIN ? ", join" : "", strerror(-r));
        send_hello_reply(c, &h, (uint32_t)-r, 0);
        return false;
    }
    c->version = reply_version(&h);
    /* A failed send ends the connection; conn_main still detaches it. */
    if (send_hello_reply(c, &h, 0, (uint32_t)c->session->max_frame) < 0)
        return true;
    follow_cpu_hint(c, &h);
    if (c->kind == CONN_JOINED)
        log_info("session %u: connection %u joined", c->ss->id, c->id);
    else
        log_info("session %u: export '%s' (%s)", c->id, exp->name, exp->path);
    return true;
}

/* C stops reading.  Returns true when it was the session's last open
 * connection: the session can no longer be joined and ends. */
static bool session_leave(struct conn *c)
{
    pthread_mutex_lock(&conns_lock);
    bool last = --c->ss->open == 0;
    pthread_mutex_unlock(&conns_lock);
    return last;
}

/* C is torn down; the last one frees the session: every open file, lock
 * and inode of it. */
static void session_release(struct conn *c)
{
    struct stream_session *ss = c->ss;
    pthread_mutex_lock(&conns_lock);
    bool last = --ss->refs == 0;
    if (last) {
        struct stream_session **p = &sessions;
        while (*p != ss)
            p = &(*p)->next;
        *p = ss->next;
    }
    pthread_mutex_unlock(&conns_lock);
    if (last) {
        fsb_session_free(ss->fs);
        free(ss);
    }
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

/* The guest P with one more reference, created on its first connection;
 * NULL when out of memory.  Called with conns_lock held. */
static struct guest *guest_get_locked(const struct stream_server_config *cfg, struct peer p)
{
    struct guest *g = guests;
    while (g && !same_peer(g->peer, p))
        g = g->next;
    if (!g && (g = calloc(1, sizeof(*g)))) {
        char name[sizeof(g->budget.name)];
        peer_name(p, name, sizeof(name));
        fsb_guest_init(&g->budget, name, cfg->guest_limits);
        g->peer = p;
        g->next = guests;
        guests = g;
    }
    if (g)
        g->conns++;
    return g;
}

/* Drops a reference; the last one frees the guest (everything its
 * sessions held has been given back by then).  Called with conns_lock
 * held. */
static void guest_put_locked(struct guest *g)
{
    if (--g->conns > 0)
        return;
    struct guest **p = &guests;
    while (*p != g)
        p = &(*p)->next;
    *p = g->next;
    fsb_guest_destroy(&g->budget);
    free(g);
}

/* Gives back a connection's place in G's session budget (after its
 * session, whose files and inodes count on G, is gone). */
static void guest_leave(struct guest *g)
{
    pthread_mutex_lock(&conns_lock);
    fsb_guest_give(&g->budget, FSB_BUDGET_SESSIONS, 1);
    guest_put_locked(g);
    pthread_mutex_unlock(&conns_lock);
}

static void conn_free(struct conn *c)
{
    if (c->ss)
        session_release(c); /* the last frees the session before its guest goes */
    guest_leave(c->guest);
    close(c->fd);
    free(c->threads);
    pthread_mutex_destroy(&c->lock);
    pthread_mutex_destroy(&c->send_lock);
    pthread_cond_destroy(&c->work);
    pthread_cond_destroy(&c->space);
    free(c);
}

/* A connection that drops fails only its own requests; the session lives
 * on while another of its connections is open. */
static void *conn_main(void *arg)
{
    struct conn *c = arg;
    if (handshake(c)) {
        reader_loop(c);
        if (c->kind == CONN_SESSION)
            fsb_notify_out_stop(c->session); /* it sends on this connection */
        bool last = session_leave(c);
        stop_workers(c, last);
        if (last)
            log_info("session %u: ended", c->ss->id);
        else
            log_info("session %u: connection %u closed", c->ss->id, c->id);
    }
    conn_unregister(c);
    conn_free(c);
    return NULL;
}

/* PEER is the connection's own (its listener, its uid or CID), never
 * GUEST's: the guest of a CID is shared by connections through every
 * listener, and may_join must compare the listener this one came through. */
static struct conn *conn_new(int fd, const struct stream_server_config *cfg, unsigned id,
                             struct guest *guest, struct peer peer)
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
    c->guest = guest;
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

/* The guest behind FP (the kernel's word on the peer), accepted on
 * LISTENER. */
static struct peer peer_of(const struct fsb_peer *fp, unsigned listener)
{
    struct peer p = { .kind = PEER_LISTENER, .listener = listener };
    if (fp->kind == FSB_PEER_VSOCK)
        p = (struct peer){ .kind = PEER_VSOCK_CID, .listener = listener, .id = fp->cid };
    else if (fp->kind == FSB_PEER_UNIX)
        p = (struct peer){ .kind = PEER_UNIX_UID, .listener = listener, .id = fp->uid };
    return p;
}

/* The guest of a new connection from P, with the connection counted as one
 * of its sessions (a HELLO being read, a session opened or joined, a
 * matchlock connection: all hold a thread); NULL (logged) when it must be
 * refused.  HELLOs being read are bounded like sessions, so that peers
 * that connect and stay silent hold no more threads than sessions would. */
static struct guest *admit(const struct stream_server_config *cfg, struct peer p)
{
    pthread_mutex_lock(&conns_lock);
    const char *why = over_limit_locked(cfg, CONN_HELLO);
    struct guest *g = why ? NULL : guest_get_locked(cfg, p);
    if (g && fsb_guest_take(&g->budget, FSB_BUDGET_SESSIONS, 1) < 0) {
        guest_put_locked(g); /* the budget logged it */
        pthread_mutex_unlock(&conns_lock);
        return NULL;
    }
    pthread_mutex_unlock(&conns_lock);
    if (!g)
        log_warn("refusing a connection: %s", why ? why : "out of memory");
    return g;
}

/* The listener's rules (--allow-uid, cid=), before a thread or a slot is
 * spent on the peer; *EXPORTS: what it may use, *GUEST: who it is. */
static bool may_connect(int fd, const struct sockaddr *sa, const struct stream_server_config *cfg,
                        unsigned listener, fsb_export_mask *exports, struct peer *guest)
{
    const struct fsb_listener_rules *rules = &cfg->listener_rules[listener];
    struct fsb_peer p = { 0 };
    const char *why = "its credentials are unknown";
    if (fsb_peer_of(fd, sa, &p) == 0 && fsb_peer_may_connect(rules, &p, &why)) {
        *exports = fsb_peer_exports(rules, &p, cfg->exports, cfg->nexports);
        *guest = peer_of(&p, listener);
        return true;
    }
    if (p.kind == FSB_PEER_VSOCK)
        log_warn("refusing a connection (CID %u): %s", (unsigned)p.cid, why);
    else
        log_warn("refusing a connection (uid %u): %s", (unsigned)p.uid, why);
    return false;
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
    fsb_export_mask exports;
    struct peer peer;
    if (!may_connect(fd, (struct sockaddr *)&sa, cfg, listener, &exports, &peer)) {
        close(fd);
        return;
    }
    struct guest *g = admit(cfg, peer);
    struct conn *c = g ? conn_new(fd, cfg, next_id++, g, peer) : NULL;
    if (!c) {
        if (g) {
            log_warn("refusing a connection: out of memory");
            guest_leave(g);
        }
        close(fd);
        return;
    }
    c->exports = exports;
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
        conn_begin_close(c, true);
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
    if (sched_getaffinity(0, sizeof(server_cpus), &server_cpus) < 0)
        CPU_ZERO(&server_cpus); /* no hint is followed */
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
