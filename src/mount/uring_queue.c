/*
 * uring_queue.c - see uring_queue.h.
 *
 * An entry's life: REGISTER (or COMMIT_AND_FETCH) submitted -> completion
 * with a request in its buffers -> sent to the host -> the reply copied
 * in, then COMMIT_AND_FETCH.  Who copies the reply in:
 *
 *   - the queue thread itself when the queue reads its own connection
 *     (a poll of the socket in the ring completes, the thread reads the
 *     replies and commits their entries at once): request and reply stay
 *     on one thread, and one CPU, end to end;
 *   - else the connection's reader thread, which sets `done` and writes
 *     the mail eventfd; the queue thread sees the mail and commits every
 *     done entry.  That hop costs a wake-up of each thread per reply.
 *
 * Only the queue thread touches the ring; a reader thread touches only an
 * entry's buffers, and only while the entry waits for its reply.
 */
#include "mount/uring_queue.h"

#include <assert.h>
#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/halt_poll.h"
#include "common/log.h"
#include "mount/fuse_uring_abi.h"

/* user_data of the mail poll and of the connection's poll; entries use
 * their address. */
#define MAIL_TAG 1
#define CONN_TAG 2

struct uring_ent {
    struct reply_dest dest; /* first: pending.h hands it back */
    struct uring_queue *q;
    struct fuse_uring_req_header *hdr;
    void *payload;
    struct iovec iov[2]; /* hdr and payload, as registered */
    uint64_t commit_id;  /* of the request the entry holds */
    atomic_bool done;    /* the reply is in the buffers */
    bool live;           /* the kernel has the entry or we owe it a commit */
};

enum queue_phase {
    PHASE_STARTING,   /* the thread sets up its ring */
    PHASE_READY,      /* ring ready (or not: result), waiting for a verdict */
    PHASE_REGISTER,   /* told to register */
    PHASE_DISCARD,    /* told to end */
    PHASE_REGISTERED, /* registration done (result) */
};

struct uring_queue {
    struct uring_queue_config cfg;
    struct relay_conn *conn; /* where its requests go, from registration */
    bool reads_conn;         /* and the thread reads its replies itself */
    struct io_uring ring;
    int mail_fd;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    enum queue_phase phase;
    int result;
    /* The queue thread's: requests sent to the host whose entries wait
     * for their commit (the reply), and the spin for them. */
    unsigned owed;
    struct fsb_halt_poll poll;
    struct uring_ent ents[URING_QUEUE_DEPTH];
};

/* The queue whose thread this is, if it is one. */
static __thread struct uring_queue *this_thread_queue;

int uring_queue_count(void)
{
    /* "0-3" or "0": the highest possible CPU number, plus one. */
    FILE *f = fopen("/sys/devices/system/cpu/possible", "re");
    char text[64] = "";
    if (!f)
        return -errno;
    bool ok = fgets(text, sizeof(text), f) != NULL;
    fclose(f);
    const char *last = strrchr(text, '-');
    long n = ok ? strtol(last ? last + 1 : text, NULL, 10) + 1 : 0;
    return n >= 1 && n <= 4096 ? (int)n : -EINVAL;
}

/* ----------------------------------------------------------------------
 * Phases (the creating thread and the queue thread)
 */

static void set_phase(struct uring_queue *q, enum queue_phase phase, int result)
{
    pthread_mutex_lock(&q->lock);
    q->phase = phase;
    q->result = result;
    pthread_cond_broadcast(&q->changed);
    pthread_mutex_unlock(&q->lock);
}

static int wait_phase(struct uring_queue *q, enum queue_phase a, enum queue_phase b)
{
    pthread_mutex_lock(&q->lock);
    while (q->phase != a && q->phase != b)
        pthread_cond_wait(&q->changed, &q->lock);
    int phase = (int)q->phase;
    pthread_mutex_unlock(&q->lock);
    return phase;
}

/* ----------------------------------------------------------------------
 * Submissions
 */

static struct io_uring_sqe *get_sqe(struct uring_queue *q)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&q->ring);
    if (!sqe) {
        io_uring_submit(&q->ring); /* the SQ holds 2 * DEPTH: never more */
        sqe = io_uring_get_sqe(&q->ring);
    }
    if (!sqe) {
        /* Cannot happen (see above); a NULL here would be a bug in the
         * ring's sizing, and going on would write through it. */
        log_error("io_uring queue %u: no free submission entry", q->cfg.qid);
        abort();
    }
    return sqe;
}

static void prep_fuse_cmd(struct uring_queue *q, struct uring_ent *e, uint32_t op)
{
    struct io_uring_sqe *sqe = get_sqe(q);
    memset(sqe, 0, 2 * sizeof(*sqe)); /* a 128-byte SQE */
    sqe->opcode = IORING_OP_URING_CMD;
    sqe->fd = q->cfg.dev_fd;
    sqe->cmd_op = op;
    sqe->addr = (uintptr_t)e->iov;
    sqe->len = 2;
    io_uring_sqe_set_data(sqe, e);
    struct fuse_uring_cmd_req *req = (void *)sqe->cmd;
    req->qid = (uint16_t)q->cfg.qid;
    req->commit_id = op == FUSE_IO_URING_CMD_COMMIT_AND_FETCH ? e->commit_id : 0;
    if (op == FUSE_IO_URING_CMD_COMMIT_AND_FETCH) {
        /* Every commit follows a forward_entry: a count that wrapped
         * would keep an idle queue spinning for good. */
        assert(q->owed > 0);
        q->owed--;
    }
}

static void arm_mail(struct uring_queue *q)
{
    struct io_uring_sqe *sqe = get_sqe(q);
    io_uring_prep_poll_multishot(sqe, q->mail_fd, POLLIN);
    io_uring_sqe_set_data64(sqe, MAIL_TAG);
}

/* One-shot, armed again after each read: a poll armed on a socket that
 * still holds bytes completes at once, so nothing left in it is missed. */
static void arm_conn(struct uring_queue *q)
{
    struct io_uring_sqe *sqe = get_sqe(q);
    io_uring_prep_poll_add(sqe, q->conn->sock, POLLIN);
    io_uring_sqe_set_data64(sqe, CONN_TAG);
}

/* ----------------------------------------------------------------------
 * Requests and replies
 */

/* The connection reader's side: the reply goes into the entry's buffers,
 * its payload already there (entry_payload) or copied (deliver_to_entry). */
static void *entry_payload(struct reply_dest *d, size_t payload)
{
    struct uring_ent *e = (struct uring_ent *)d;
    return payload <= e->q->cfg.payload_size ? e->payload : NULL;
}

static void commit_to_entry(struct reply_dest *d, const struct fuse_out_header *oh,
                            size_t payload)
{
    struct uring_ent *e = (struct uring_ent *)d;
    memcpy(e->hdr->in_out, oh, sizeof(*oh));
    e->hdr->ring_ent_in_out.payload_sz = (uint32_t)payload;
    if (e->q == this_thread_queue) {
        prep_fuse_cmd(e->q, e, FUSE_IO_URING_CMD_COMMIT_AND_FETCH);
        return;
    }
    atomic_store_explicit(&e->done, true, memory_order_release);
    uint64_t one = 1;
    if (write(e->q->mail_fd, &one, sizeof(one)) < 0)
        log_debug("io_uring queue %u: mail: %s", e->q->cfg.qid, strerror(errno));
}

static void deliver_to_entry(struct reply_dest *d, const void *msg, size_t len)
{
    struct fuse_out_header oh;
    size_t payload = len - sizeof(oh);
    memcpy(&oh, msg, sizeof(oh));
    void *buf = entry_payload(d, payload);
    if (!buf) { /* frames are smaller: never */
        oh.error = -EIO;
        payload = 0;
    } else {
        memcpy(buf, (const char *)msg + sizeof(oh), payload);
    }
    commit_to_entry(d, &oh, payload);
}

/* A completion with a request in E: to the host, as one frame of the
 * header, the opcode's argument and the payload. */
static void forward_entry(struct uring_queue *q, struct uring_ent *e)
{
    q->owed++; /* until its commit, whoever answers it (also the errors below) */
    struct fuse_in_header ih;
    memcpy(&ih, e->hdr->in_out, sizeof(ih));
    uint32_t payload = e->hdr->ring_ent_in_out.payload_sz;
    e->commit_id = e->hdr->ring_ent_in_out.commit_id;
    size_t rest = ih.len >= sizeof(ih) + payload ? ih.len - sizeof(ih) - payload : SIZE_MAX;
    if (rest > FUSE_URING_OP_IN_OUT_SZ || payload > q->cfg.payload_size) {
        log_debug("io_uring queue %u: request %llu of bad length dropped", q->cfg.qid,
                  (unsigned long long)ih.unique);
        relay_reply_error(&e->dest, e->commit_id, -EIO);
        return;
    }
    log_debug("request %llu (ring %u): opcode %u, %u bytes", (unsigned long long)ih.unique,
              q->cfg.qid, ih.opcode, ih.len);
    struct iovec iov[3] = {
        { .iov_base = e->hdr->in_out, .iov_len = sizeof(ih) },
        { .iov_base = e->hdr->op_in, .iov_len = rest },
        { .iov_base = e->payload, .iov_len = payload },
    };
    relay_forward(q->conn, &e->dest, &ih, iov, 3);
}

static void commit_done_entries(struct uring_queue *q)
{
    for (unsigned i = 0; i < URING_QUEUE_DEPTH; i++) {
        struct uring_ent *e = &q->ents[i];
        if (atomic_exchange_explicit(&e->done, false, memory_order_acquire))
            prep_fuse_cmd(q, e, FUSE_IO_URING_CMD_COMMIT_AND_FETCH);
    }
}

static unsigned live_entries(const struct uring_queue *q)
{
    unsigned n = 0;
    for (unsigned i = 0; i < URING_QUEUE_DEPTH; i++)
        n += q->ents[i].live;
    return n;
}

/* Returns false once the queue has no entry left (the session ended). */
static bool handle_completion(struct uring_queue *q, const struct io_uring_cqe *cqe)
{
    if (cqe->user_data == MAIL_TAG) {
        uint64_t count;
        if (read(q->mail_fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
            log_debug("io_uring queue %u: mail: %s", q->cfg.qid, strerror(errno));
        commit_done_entries(q);
        if (!(cqe->flags & IORING_CQE_F_MORE))
            arm_mail(q);
        return true;
    }
    if (cqe->user_data == CONN_TAG) {
        /* A failed read ends the relay (a lost host); the entries then
         * end with the session. */
        if (cqe->res >= 0 && relay_conn_read_ready(q->conn) == 0)
            arm_conn(q);
        return true;
    }
    struct uring_ent *e = io_uring_cqe_get_data(cqe);
    if (cqe->res == 0) {
        forward_entry(q, e);
        return true;
    }
    /* ENOTCONN, ECANCELED: the session is being torn down (unmount or
     * abort); /dev/fuse tells the relay how it ended. */
    if (cqe->res != -ENOTCONN && cqe->res != -ECANCELED)
        log_error("io_uring queue %u: %s", q->cfg.qid, strerror(-cqe->res));
    e->live = false;
    return live_entries(q) > 0;
}

/*
 * Whether a completion is there, after running the ring's task work.  With
 * DEFER_TASKRUN the kernel posts a completion (the socket's poll, a new
 * request in an entry) only as task work that runs when this thread enters
 * io_uring with GETEVENTS, so peeking at the CQ ring alone would never see
 * it: io_uring_get_events() is that entry, without waiting.  (Without
 * DEFER_TASKRUN the task work also runs on that system call's return.)
 */
static bool completion_ready(void *arg)
{
    struct uring_queue *q = arg;
    if (io_uring_cq_ready(&q->ring))
        return true;
    io_uring_get_events(&q->ring);
    return io_uring_cq_ready(&q->ring) > 0;
}

/*
 * Submits what was prepared and waits for at least one completion.  While
 * the host owes replies, the reply (or a new request) often comes a few
 * microseconds after the wait begins, and a sleeping thread takes tens of
 * them to run again, often woken from another CPU: so it first spins for
 * the adaptive window (halt_poll.h), and sleeps only if nothing came.
 * Nothing owed: it sleeps at once, so an idle queue spins never.
 */
static int wait_for_completion(struct uring_queue *q)
{
    if (q->owed == 0 || q->poll.max_ns == 0)
        return io_uring_submit_and_wait(&q->ring, 1);
    int err = io_uring_submit(&q->ring);
    if (err < 0)
        return err;
    uint64_t start = fsb_halt_poll_now_ns();
    if (fsb_halt_poll_spin(&q->poll, completion_ready, q, start)) {
        fsb_halt_poll_caught(&q->poll);
        return 0;
    }
    err = io_uring_submit_and_wait(&q->ring, 1);
    fsb_halt_poll_slept(&q->poll, fsb_halt_poll_now_ns() - start);
    return err;
}

static void run(struct uring_queue *q)
{
    for (;;) {
        int err = wait_for_completion(q);
        if (err < 0 && err != -EINTR) {
            log_error("io_uring queue %u: %s", q->cfg.qid, strerror(-err));
            return;
        }
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        bool more = true;
        io_uring_for_each_cqe(&q->ring, head, cqe)
        {
            seen++;
            more = handle_completion(q, cqe) && more;
        }
        io_uring_cq_advance(&q->ring, seen);
        if (!more)
            return;
    }
}

/* ----------------------------------------------------------------------
 * Setup, on the queue thread
 */

static void pin_to_cpu(unsigned cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    /* A CPU that is possible but offline: run anywhere. */
    pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static int setup_ring(struct uring_queue *q)
{
    /* DEFER_TASKRUN: the kernel's copy of a request into an entry runs
     * when this thread waits, not as an interrupting signal.  Older
     * kernels lack it; 128-byte SQEs are required. */
    unsigned entries = 2 * URING_QUEUE_DEPTH;
    int err = io_uring_queue_init(entries, &q->ring,
                                  IORING_SETUP_SQE128 | IORING_SETUP_SINGLE_ISSUER |
                                      IORING_SETUP_DEFER_TASKRUN);
    if (err == -EINVAL)
        err = io_uring_queue_init(entries, &q->ring, IORING_SETUP_SQE128);
    if (err)
        return err;
    q->mail_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (q->mail_fd < 0)
        return -errno;
    size_t payload = q->cfg.payload_size;
    char *payloads = mmap(NULL, payload * URING_QUEUE_DEPTH, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (payloads == MAP_FAILED)
        return -errno;
    for (unsigned i = 0; i < URING_QUEUE_DEPTH; i++) {
        struct uring_ent *e = &q->ents[i];
        e->hdr = calloc(1, sizeof(*e->hdr));
        e->payload = payloads + i * payload;
        if (!e->hdr)
            return -ENOMEM;
    }
    return 0;
}

/* Registers every entry.  Errors come back at once (the command fails
 * inline); a successful REGISTER completes only when a request comes. */
static int register_entries(struct uring_queue *q)
{
    arm_mail(q);
    if (q->reads_conn)
        arm_conn(q);
    for (unsigned i = 0; i < URING_QUEUE_DEPTH; i++) {
        prep_fuse_cmd(q, &q->ents[i], FUSE_IO_URING_CMD_REGISTER);
        q->ents[i].live = true;
    }
    int n = io_uring_submit(&q->ring);
    if (n < 0)
        return n;
    struct io_uring_cqe *cqe;
    unsigned head;
    io_uring_for_each_cqe(&q->ring, head, cqe)
    {
        if (cqe->user_data != MAIL_TAG && cqe->user_data != CONN_TAG && cqe->res < 0)
            return cqe->res; /* left for nobody: the thread ends */
    }
    return 0;
}

static void *queue_main(void *arg)
{
    struct uring_queue *q = arg;
    this_thread_queue = q;
    pin_to_cpu(q->cfg.qid);
    int err = setup_ring(q);
    set_phase(q, PHASE_READY, err);
    if (err || wait_phase(q, PHASE_REGISTER, PHASE_DISCARD) == PHASE_DISCARD)
        return NULL; /* the process exits soon; nothing to free */
    if (q->reads_conn)
        relay_conn_read_here(q->conn);
    err = register_entries(q);
    set_phase(q, PHASE_REGISTERED, err);
    if (!err)
        run(q);
    return NULL;
}

/* ----------------------------------------------------------------------
 * The relay's side
 */

int uring_queue_create(const struct uring_queue_config *cfg, struct uring_queue **out)
{
    struct uring_queue *q = calloc(1, sizeof(*q));
    if (!q)
        return -ENOMEM;
    q->cfg = *cfg;
    q->mail_fd = -1;
    fsb_halt_poll_init(&q->poll, cfg->poll_us);
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->changed, NULL);
    for (unsigned i = 0; i < URING_QUEUE_DEPTH; i++) {
        q->ents[i].q = q;
        q->ents[i].dest = (struct reply_dest){ .deliver = deliver_to_entry,
                                               .dev_fd = cfg->dev_fd,
                                               .payload_buf = entry_payload,
                                               .deliver_in_place = commit_to_entry };
    }
    pthread_t tid;
    int err = -pthread_create(&tid, NULL, queue_main, q);
    if (err)
        return err; /* q stays allocated: the caller exits */
    pthread_detach(tid);
    wait_phase(q, PHASE_READY, PHASE_READY);
    for (unsigned i = 0; i < URING_QUEUE_DEPTH; i++) {
        q->ents[i].iov[0] = (struct iovec){ q->ents[i].hdr, sizeof(*q->ents[i].hdr) };
        q->ents[i].iov[1] = (struct iovec){ q->ents[i].payload, cfg->payload_size };
    }
    *out = q;
    return q->result;
}

int uring_queue_register(struct uring_queue *q, struct relay_conn *conn, bool reads_conn)
{
    q->conn = conn; /* before the phase change publishes them */
    q->reads_conn = reads_conn;
    set_phase(q, PHASE_REGISTER, 0);
    wait_phase(q, PHASE_REGISTERED, PHASE_REGISTERED);
    return q->result;
}

void uring_queue_submit_here(void)
{
    struct uring_queue *q = this_thread_queue;
    int err = q ? io_uring_submit(&q->ring) : 0;
    if (err < 0)
        log_debug("io_uring queue %u: submit: %s", q->cfg.qid, strerror(-err));
}

void uring_queue_discard(struct uring_queue *q)
{
    set_phase(q, PHASE_DISCARD, 0);
}
