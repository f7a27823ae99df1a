/*
 * notify_out.c - see notify_out.h.  A ring of fixed-size messages under one
 * mutex; the sending thread is the only reader.
 */
#include "engine/notify_out.h"
#include "backend/passthrough/change_watch.h"
#include "backend/passthrough/passthrough.h"
#include "common/log.h"
#include "engine/session.h"

#include <errno.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define FSB_NOTIFY_INC_EPOCH 8 /* FUSE 7.44; <linux/fuse.h> may be older */
#define INC_EPOCH_MINOR 44

struct notify_msg {
    uint32_t len;
    union {
        struct fuse_out_header h;
        unsigned char bytes[sizeof(struct fuse_out_header) +
                            sizeof(struct fuse_notify_inval_entry_out) + 256];
    } u;
};

struct fsb_notify_out {
    struct fsb_session *s;
    unsigned id;
    fsb_notify_send_fn send;
    void *cookie;
    pthread_t thread;

    pthread_mutex_t lock;      /* guards everything below */
    pthread_cond_t wake;
    struct notify_msg ring[FSB_NOTIFY_QUEUE_MAX];
    unsigned head, count;
    unsigned limit;            /* FSB_NOTIFY_QUEUE_MAX, or less for tests */
    bool overflowed, stop;
    uint64_t sent, overflows;  /* for the log at the end */
};

static void msg_header(struct notify_msg *m, int code, size_t body)
{
    m->len = (uint32_t)(sizeof(m->u.h) + body);
    m->u.h = (struct fuse_out_header){ .len = m->len, .error = code, .unique = 0 };
}

/* FSBRIDGE_TEST_NOTIFY_QUEUE_MAX=N (1..FSB_NOTIFY_QUEUE_MAX) shrinks the
 * queue, so that a test reaches the overflow path for sure: a daemon that
 * keeps up, with fanotify merging a file's unread events, may never fill
 * the real one. */
static unsigned queue_limit(void)
{
    const char *v = getenv("FSBRIDGE_TEST_NOTIFY_QUEUE_MAX");
    unsigned long n = v ? strtoul(v, NULL, 10) : 0;
    return n >= 1 && n <= FSB_NOTIFY_QUEUE_MAX ? (unsigned)n : FSB_NOTIFY_QUEUE_MAX;
}

/* Queues M, or marks the queue overflowed when full. */
static void push(struct fsb_notify_out *o, const struct notify_msg *m)
{
    pthread_mutex_lock(&o->lock);
    if (o->count == o->limit) {
        o->overflowed = true;
    } else if (!o->overflowed) {
        o->ring[(o->head + o->count) % FSB_NOTIFY_QUEUE_MAX] = *m;
        o->count++;
    }
    pthread_cond_signal(&o->wake);
    pthread_mutex_unlock(&o->lock);
}

static void inval_inode_msg(struct notify_msg *m, uint64_t nodeid, int64_t off, int64_t len)
{
    struct fuse_notify_inval_inode_out a = { .ino = nodeid, .off = off, .len = len };
    msg_header(m, FUSE_NOTIFY_INVAL_INODE, sizeof(a));
    memcpy(m->u.bytes + sizeof(m->u.h), &a, sizeof(a));
}

static void sink_inval_inode(void *cookie, uint64_t nodeid, int64_t off, int64_t len)
{
    struct notify_msg m;
    inval_inode_msg(&m, nodeid, off, len);
    push(cookie, &m);
}

static void sink_inval_entry(void *cookie, uint64_t parent, const char *name)
{
    size_t n = strnlen(name, 256);
    if (n == 256)
        return;
    struct fuse_notify_inval_entry_out a = { .parent = parent, .namelen = (uint32_t)n };
    struct notify_msg m;
    msg_header(&m, FUSE_NOTIFY_INVAL_ENTRY, sizeof(a) + n + 1);
    memcpy(m.u.bytes + sizeof(m.u.h), &a, sizeof(a));
    memcpy(m.u.bytes + sizeof(m.u.h) + sizeof(a), name, n + 1);
    push(cookie, &m);
}

static void sink_inval_all(void *cookie)
{
    struct fsb_notify_out *o = cookie;
    pthread_mutex_lock(&o->lock);
    o->overflowed = true;
    pthread_cond_signal(&o->wake);
    pthread_mutex_unlock(&o->lock);
}

static void sink_changed(void *cookie)
{
    struct fsb_notify_out *o = cookie;
    atomic_fetch_add_explicit(&o->s->host_changes, 1, memory_order_acq_rel);
}

static const struct change_sink session_sink = {
    .inval_inode = sink_inval_inode,
    .inval_entry = sink_inval_entry,
    .inval_all = sink_inval_all,
    .changed = sink_changed,
};

static void send_msg(struct fsb_notify_out *o, const struct notify_msg *m)
{
    o->send(o->cookie, m->u.bytes, m->len);
    o->sent++;
}

/* The queue overflowed: every cached name and every known node. */
static void drop_whole_cache(struct fsb_notify_out *o)
{
    o->overflows++;
    log_info("session %u: notification queue overflowed (%llu times): dropping the guest's "
             "whole cache", o->id, (unsigned long long)o->overflows);
    struct notify_msg m;
    if (o->s->kernel_minor >= INC_EPOCH_MINOR) {
        msg_header(&m, FSB_NOTIFY_INC_EPOCH, 0);
        send_msg(o, &m);
    }
    uint64_t *ids;
    size_t n = passthrough_known_nodes(o->s->backend, &ids);
    for (size_t i = 0; i < n; i++) {
        inval_inode_msg(&m, ids[i], 0, 0);
        send_msg(o, &m);
    }
    free(ids);
}

/* The next thing to do: false when stopping.  *resync: the queue was
 * dropped, invalidate everything. */
static bool next_msg(struct fsb_notify_out *o, struct notify_msg *m, bool *resync)
{
    pthread_mutex_lock(&o->lock);
    while (!o->count && !o->overflowed && !o->stop)
        pthread_cond_wait(&o->wake, &o->lock);
    *resync = o->overflowed;
    if (o->overflowed) {
        o->overflowed = false;
        o->count = 0;
    } else if (o->count) {
        *m = o->ring[o->head];
        o->head = (o->head + 1) % FSB_NOTIFY_QUEUE_MAX;
        o->count--;
    }
    bool go = !o->stop;
    pthread_mutex_unlock(&o->lock);
    return go;
}

static void *sender_main(void *arg)
{
    struct fsb_notify_out *o = arg;
    struct notify_msg m;
    bool resync;
    while (next_msg(o, &m, &resync)) {
        if (resync)
            drop_whole_cache(o);
        else
            send_msg(o, &m);
    }
    return NULL;
}

int fsb_notify_out_start(struct fsb_session *s, unsigned log_id, fsb_notify_send_fn send,
                         void *cookie)
{
    if (!s->export->watch)
        return -ENOTSUP;
    struct fsb_notify_out *o = calloc(1, sizeof(*o));
    if (!o)
        return -ENOMEM;
    *o = (struct fsb_notify_out){ .s = s, .id = log_id, .send = send, .cookie = cookie,
                                  .limit = queue_limit() };
    pthread_mutex_init(&o->lock, NULL);
    pthread_cond_init(&o->wake, NULL);
    int err = passthrough_track(s->backend, &session_sink, o);
    if (!err && (err = -pthread_create(&o->thread, NULL, sender_main, o)))
        passthrough_untrack(s->backend);
    if (err) {
        pthread_mutex_destroy(&o->lock);
        pthread_cond_destroy(&o->wake);
        free(o);
        return err;
    }
    s->notify = o;
    s->coherent = true;
    return 0;
}

void fsb_notify_out_stop(struct fsb_session *s)
{
    struct fsb_notify_out *o = s->notify;
    if (!o)
        return;
    passthrough_untrack(s->backend); /* no sink call after this */
    pthread_mutex_lock(&o->lock);
    o->stop = true;
    pthread_cond_signal(&o->wake);
    pthread_mutex_unlock(&o->lock);
    pthread_join(o->thread, NULL);
    log_info("session %u: %llu notifications sent, %llu queue overflows", o->id,
             (unsigned long long)o->sent, (unsigned long long)o->overflows);
    pthread_mutex_destroy(&o->lock);
    pthread_cond_destroy(&o->wake);
    free(o);
    s->notify = NULL;
}
