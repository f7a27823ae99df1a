/*
 * matchlock_client.c - see matchlock_client.h.
 *
 * Locking: one mutex guards the pool (which connections exist, which are
 * busy, the lost flag).  A busy connection's socket and buffers belong to
 * the thread that took it, without the lock, until it gives it back.
 * Connections are never closed before the process exits, only shut down:
 * the watcher may be polling a descriptor, which must not be reused under
 * it.
 */
#include "mount_matchlock/matchlock_client.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/fdio.h"
#include "common/log.h"
#include "mount/connect_error.h"

struct ml_conn {
    int fd;
    bool busy;
    bool retired;       /* refused by the host: never used again */
    bool hangup_seen;   /* the watcher saw a hang-up while it was busy */
    unsigned handles;   /* open handles pinned here */
    unsigned long done; /* round trips completed (written by the owner only) */
    uint8_t *out, *in;  /* encode and receive buffers, grown on demand */
    size_t out_cap, in_cap;
};

struct ml_client {
    const struct fsb_address *addr;
    pthread_mutex_t lock;
    pthread_cond_t changed;  /* a connection was freed or opened, or the host lost */
    struct ml_conn conns[ML_CLIENT_MAX_CONNS];
    unsigned slots;          /* conns[] used, retired ones included */
    unsigned live;           /* not retired */
    unsigned opening;        /* connects in progress */
    unsigned max_conns;
    bool lost;
    char lost_reason[256];
    int timeout_ms;
    int wake_fd;             /* eventfd: the watcher rebuilds its poll set */
    void (*on_lost)(void *arg);
    void *arg;
};

/* ----------------------------------------------------------------------
 * Losing the host
 */

static void wake_watcher(struct ml_client *c)
{
    uint64_t one = 1;
    if (write(c->wake_fd, &one, sizeof(one)) < 0)
        log_debug("waking the connection watcher: %s", strerror(errno));
}

/* Ends every connection; waiting and later calls fail with ENOTCONN. */
static void lose_host(struct ml_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void lose_host(struct ml_client *c, const char *fmt, ...)
{
    pthread_mutex_lock(&c->lock);
    bool first = !c->lost;
    if (first) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->lost_reason, sizeof(c->lost_reason), fmt, ap);
        va_end(ap);
        c->lost = true;
        /* Threads blocked on a socket wake up with an error. */
        for (unsigned i = 0; i < c->slots; i++)
            shutdown(c->conns[i].fd, SHUT_RDWR);
        pthread_cond_broadcast(&c->changed);
        wake_watcher(c);
    }
    pthread_mutex_unlock(&c->lock);
    if (first && c->on_lost)
        c->on_lost(c->arg);
}

const char *ml_client_lost_reason(struct ml_client *c)
{
    return c->lost_reason;
}

/* A connection the host closed before it answered anything, while others
 * work: the host limits its connections.  Called with the lock held. */
static bool refused_extra(const struct ml_client *c, const struct ml_conn *conn)
{
    return conn->done == 0 && c->live > 1;
}

static void retire_locked(struct ml_client *c, struct ml_conn *conn)
{
    conn->retired = true;
    conn->busy = false;
    shutdown(conn->fd, SHUT_RDWR);
    c->live--;
    c->max_conns = c->live;
    log_debug("%s closed an extra connection: using at most %u", c->addr->text, c->live);
    pthread_cond_broadcast(&c->changed);
    wake_watcher(c);
}

/* ----------------------------------------------------------------------
 * Taking and giving back connections
 */

static void add_conn_locked(struct ml_client *c, int fd, struct ml_conn **out)
{
    struct ml_conn *conn = &c->conns[c->slots++];
    memset(conn, 0, sizeof(*conn));
    conn->fd = fd;
    conn->busy = true;
    c->live++;
    wake_watcher(c);
    *out = conn;
}

/* The free connection with the fewest handles, or NULL. */
static struct ml_conn *least_loaded_free(struct ml_client *c)
{
    struct ml_conn *best = NULL;
    for (unsigned i = 0; i < c->slots; i++) {
        struct ml_conn *conn = &c->conns[i];
        if (!conn->busy && !conn->retired && (!best || conn->handles < best->handles))
            best = conn;
    }
    return best;
}

/* Opens one more connection, the lock dropped meanwhile.  A host that
 * refuses it caps the pool.  Returns true when *out was set. */
static bool open_another_locked(struct ml_client *c, struct ml_conn **out)
{
    c->opening++;
    pthread_mutex_unlock(&c->lock);
    int fd = fsb_address_connect(c->addr);
    pthread_mutex_lock(&c->lock);
    c->opening--;
    if (fd >= 0 && !c->lost && c->slots < ML_CLIENT_MAX_CONNS) {
        add_conn_locked(c, fd, out);
        return true;
    }
    if (fd >= 0)
        close(fd);
    else {
        c->max_conns = c->live;
        log_debug("%s refused an extra connection (%s): using at most %u", c->addr->text,
                  strerror(-fd), c->live);
    }
    pthread_cond_broadcast(&c->changed);
    return false;
}

static bool may_open_another(const struct ml_client *c)
{
    return c->live + c->opening < c->max_conns && c->slots + c->opening < ML_CLIENT_MAX_CONNS;
}

static int acquire(struct ml_client *c, struct ml_conn *pin, struct ml_conn **out)
{
    pthread_mutex_lock(&c->lock);
    for (;;) {
        struct ml_conn *conn = NULL;
        if (c->lost)
            break;
        if (pin)
            conn = pin->busy ? NULL : pin;
        else if (!(conn = least_loaded_free(c)) && may_open_another(c)) {
            if (open_another_locked(c, out)) {
                pthread_mutex_unlock(&c->lock);
                return 0;
            }
            continue;
        }
        if (conn) {
            conn->busy = true;
            *out = conn;
            pthread_mutex_unlock(&c->lock);
            return 0;
        }
        pthread_cond_wait(&c->changed, &c->lock);
    }
    pthread_mutex_unlock(&c->lock);
    return -ENOTCONN;
}

static void release(struct ml_client *c, struct ml_conn *conn)
{
    pthread_mutex_lock(&c->lock);
    conn->busy = false;
    if (conn->hangup_seen) {
        conn->hangup_seen = false;
        wake_watcher(c); /* poll it again now that it is idle */
    }
    pthread_cond_broadcast(&c->changed);
    pthread_mutex_unlock(&c->lock);
}

void ml_conn_hold(struct ml_client *c, struct ml_conn *conn)
{
    pthread_mutex_lock(&c->lock);
    conn->handles++;
    pthread_mutex_unlock(&c->lock);
}

void ml_conn_unhold(struct ml_client *c, struct ml_conn *conn)
{
    pthread_mutex_lock(&c->lock);
    if (conn->handles)
        conn->handles--;
    pthread_mutex_unlock(&c->lock);
}

/* ----------------------------------------------------------------------
 * One round trip
 */

static int grow(uint8_t **buf, size_t *cap, size_t want)
{
    if (*cap >= want)
        return 0;
    uint8_t *p = realloc(*buf, want);
    if (!p)
        return -ENOMEM;
    *buf = p;
    *cap = want;
    return 0;
}

/* Encodes REQ into the connection's buffer; returns the frame size. */
static ssize_t encode(struct ml_conn *conn, const struct ml_request *req)
{
    /* Keys, integers and string headers take under 256 bytes. */
    size_t want = 256 + strlen(req->path) + strlen(req->new_path) + req->data_len;
    for (int attempt = 0; attempt < 2; attempt++, want *= 2) {
        if (grow(&conn->out, &conn->out_cap, want) < 0)
            return -ENOMEM;
        ssize_t n = ml_encode_request(req, conn->out, conn->out_cap);
        if (n != -EMSGSIZE)
            return n;
    }
    return -EMSGSIZE;
}

static const char *op_name(unsigned op)
{
    const char *name = ml_op_name(op);
    return name ? name : "request";
}

static int wait_readable(int fd, int timeout_ms)
{
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    int n;
    if (timeout_ms <= 0)
        return 0;
    do
        n = poll(&pfd, 1, timeout_ms);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n == 0 ? -ETIMEDOUT : 0;
}

/* Reads and drops LEN bytes of a frame too big to keep, so that the
 * stream stays in step.  0 or -errno. */
static int skip_bytes(struct ml_conn *conn, uint32_t len)
{
    int err = grow(&conn->in, &conn->in_cap, 64 * 1024);
    while (!err && len > 0) {
        uint32_t n = len < conn->in_cap ? len : (uint32_t)conn->in_cap;
        err = fsb_read_full(conn->fd, conn->in, n);
        len -= n;
    }
    return err;
}

/* Reads one response frame into conn->in; returns its length or -errno,
 * with a reason in WHY.  A frame over ML_RESPONSE_MAX (a directory of
 * millions of entries) is skipped: -EFBIG. */
static ssize_t receive(struct ml_client *c, struct ml_conn *conn, const char *op, char *why,
                       size_t whylen)
{
    uint8_t header[ML_FRAME_HEADER_SIZE];
    int err = wait_readable(conn->fd, c->timeout_ms);
    if (!err)
        err = fsb_read_full(conn->fd, header, sizeof(header));
    uint32_t len = err ? 0 : ml_frame_length(header);
    if (!err && len > ML_RESPONSE_MAX) {
        snprintf(why, whylen, "response to %s of %u bytes refused (at most %u)", op, len,
                 ML_RESPONSE_MAX);
        err = skip_bytes(conn, len);
        return err ? err : -EFBIG;
    }
    if (!err)
        err = grow(&conn->in, &conn->in_cap, len ? len : 1);
    if (!err)
        err = fsb_read_full(conn->fd, conn->in, len);
    if (err == -ETIMEDOUT)
        snprintf(why, whylen, "no response to %s within %d s", op, c->timeout_ms / 1000);
    else if (err == -EPIPE)
        snprintf(why, whylen, "the host closed the connection");
    else if (err)
        snprintf(why, whylen, "reading the response to %s: %s", op, strerror(-err));
    return err ? err : (ssize_t)len;
}

/*
 * Returns 0, -EINVAL (REQ cannot be sent), -EFBIG (the response was too
 * big), -EPROTO (a bad response: the stream cannot be trusted any more) or
 * another -errno (the connection failed), with a reason in WHY.
 */
static int roundtrip(struct ml_client *c, struct ml_conn *conn, const struct ml_request *req,
                     struct ml_response *resp, char *why, size_t whylen)
{
    const char *op = op_name(req->op);
    ssize_t n = encode(conn, req);
    if (n < 0) {
        snprintf(why, whylen, "cannot encode %s: %s", op, strerror((int)-n));
        return n == -ENOMEM ? -ENOMEM : -EINVAL;
    }
    int err = fsb_write_full(conn->fd, conn->out, (size_t)n);
    if (err) {
        snprintf(why, whylen, "sending %s: %s", op, strerror(-err));
        return err;
    }
    n = receive(c, conn, op, why, whylen);
    if (n < 0)
        return (int)n;
    const char *bad = NULL;
    if (ml_decode_response(conn->in, (size_t)n, resp, &bad) < 0) {
        snprintf(why, whylen, "malformed response to %s: %s", op, bad ? bad : "bad CBOR");
        return -EPROTO;
    }
    return 0;
}

/* After a failed round trip: retire a refused extra connection (true:
 * try another), or lose the host. */
static bool recover(struct ml_client *c, struct ml_conn *conn, int err, const char *why)
{
    pthread_mutex_lock(&c->lock);
    bool retry = err != -EPROTO && !c->lost && refused_extra(c, conn);
    if (retry)
        retire_locked(c, conn);
    pthread_mutex_unlock(&c->lock);
    if (!retry) {
        lose_host(c, "%s", why);
        release(c, conn);
    }
    return retry;
}

int ml_client_call(struct ml_client *c, struct ml_conn *pin, const struct ml_request *req,
                   struct ml_exchange *x)
{
    for (;;) {
        struct ml_conn *conn;
        char why[256];
        int err = acquire(c, pin, &conn);
        if (err)
            return err;
        err = roundtrip(c, conn, req, &x->resp, why, sizeof(why));
        if (!err) {
            conn->done++;
            x->client = c;
            x->conn = conn;
            return 0;
        }
        if (err == -EINVAL || err == -ENOMEM || err == -EFBIG) {
            log_warn("%s", why);
            if (err == -EFBIG)
                conn->done++; /* answered, and skipped: the stream is fine */
            release(c, conn);
            return err == -EFBIG ? -EIO : err;
        }
        if (!recover(c, conn, err, why))
            return -ENOTCONN;
    }
}

void ml_exchange_done(struct ml_exchange *x)
{
    if (x->conn)
        release(x->client, x->conn);
    x->conn = NULL;
}

/* ----------------------------------------------------------------------
 * The watcher: a host that hangs up shows on idle connections too
 */

/* What the watcher does with a connection the host hung up. */
static void hangup(struct ml_client *c, struct ml_conn *conn)
{
    pthread_mutex_lock(&c->lock);
    bool lost = false;
    if (conn->retired || c->lost)
        ;
    else if (conn->busy)
        conn->hangup_seen = true; /* its owner sees the end itself */
    else if (refused_extra(c, conn))
        retire_locked(c, conn);
    else
        lost = true;
    pthread_mutex_unlock(&c->lock);
    if (lost)
        lose_host(c, "the host closed the connection");
}

/* Fills PFDS (wake fd first) with the connections to watch; 0 once the
 * host is lost. */
static nfds_t watch_set(struct ml_client *c, struct pollfd *pfds, struct ml_conn **who)
{
    nfds_t n = 1;
    pfds[0] = (struct pollfd){ .fd = c->wake_fd, .events = POLLIN };
    pthread_mutex_lock(&c->lock);
    if (c->lost)
        n = 0;
    for (unsigned i = 0; n && i < c->slots; i++) {
        struct ml_conn *conn = &c->conns[i];
        if (conn->retired || conn->hangup_seen)
            continue;
        who[n] = conn;
        pfds[n++] = (struct pollfd){ .fd = conn->fd, .events = POLLRDHUP };
    }
    pthread_mutex_unlock(&c->lock);
    return n;
}

static void *watcher_main(void *arg)
{
    struct ml_client *c = arg;
    struct pollfd pfds[ML_CLIENT_MAX_CONNS + 1];
    struct ml_conn *who[ML_CLIENT_MAX_CONNS + 1];
    nfds_t n;
    while ((n = watch_set(c, pfds, who)) > 0) {
        if (poll(pfds, n, -1) < 0) {
            if (errno == EINTR)
                continue;
            log_warn("watching the host connections: %s", strerror(errno));
            return NULL;
        }
        uint64_t count;
        if (pfds[0].revents && read(c->wake_fd, &count, sizeof(count)) < 0)
            log_debug("connection watcher: %s", strerror(errno));
        for (nfds_t i = 1; i < n; i++)
            if (pfds[i].revents & (POLLRDHUP | POLLHUP | POLLERR))
                hangup(c, who[i]);
    }
    return NULL;
}

int ml_client_start_watcher(struct ml_client *c)
{
    pthread_t tid;
    int err = pthread_create(&tid, NULL, watcher_main, c);
    if (err)
        return -err;
    pthread_detach(tid);
    return 0;
}

/* ----------------------------------------------------------------------
 * Opening
 */

void ml_client_close(struct ml_client *c)
{
    if (!c)
        return;
    for (unsigned i = 0; i < c->slots; i++) {
        close(c->conns[i].fd);
        free(c->conns[i].out);
        free(c->conns[i].in);
    }
    close(c->wake_fd);
    pthread_cond_destroy(&c->changed);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

void ml_client_set_timeout(struct ml_client *c, int timeout_ms)
{
    c->timeout_ms = timeout_ms;
}

struct ml_client *ml_client_open(const struct ml_client_config *cfg)
{
    struct ml_client *c = calloc(1, sizeof(*c));
    if (!c) {
        log_error("out of memory");
        return NULL;
    }
    c->addr = cfg->addr;
    c->on_lost = cfg->on_lost;
    c->arg = cfg->arg;
    /* A serial port or an inherited descriptor is one stream. */
    c->max_conns = cfg->addr->kind == FSB_ADDR_SERIAL || cfg->addr->kind == FSB_ADDR_FD
                       ? 1 : cfg->max_conns;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->changed, NULL);
    c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    int fd = fsb_address_connect(cfg->addr);
    if (c->wake_fd < 0 || fd < 0) {
        if (fd < 0)
            log_connect_error(cfg->addr, fd, "matchlock host");
        else
            log_error("eventfd: %s", strerror(errno));
        if (fd >= 0)
            close(fd);
        if (c->wake_fd >= 0)
            close(c->wake_fd);
        free(c);
        return NULL;
    }
    struct ml_conn *first;
    add_conn_locked(c, fd, &first);
    first->busy = false;
    return c;
}
