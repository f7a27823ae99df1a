/*
 * virtio_fs.c - see virtio_fs.h.
 *
 * One FUSE session spans every queue.  It is replaced when the guest's
 * driver starts over: a FUSE_INIT on an initialized session (the guest
 * rebooted, or unmounted and mounted again) retires the old one, and so
 * does FUSE_DESTROY.  A retired session is freed when its last request
 * finishes.
 */
#include "transport/vhost/virtio_fs.h"
#include "transport/stream_hello.h"
#include "transport/vhost/vhost_user.h"
#include "common/log.h"
#include "engine/fuse_engine.h"
#include "engine/iov_cursor.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A lock wait (SETLKW) may last until the guest sends the unlock, so it
 * gets a thread of its own: neither a queue thread nor a pool thread may
 * sit in it, or the unlock could queue behind it.  Bounded: beyond this
 * many, a SETLKW only tries (ENOLCK when the lock is taken). */
#define MAX_LOCK_WAITERS 64

struct session_slot {
    struct fsb_session *s;
    unsigned refs; /* the device's own (while current) + running requests */
};

struct job {
    struct job *next;
    struct vu_queue *q;
    struct vq_element *e;
    uint32_t opcode;
};

struct virtio_fs {
    const struct fsb_export *export;
    struct fsb_guest *guest;

    pthread_mutex_t lock;       /* guards CURRENT and every slot's refs */
    struct session_slot *current;

    pthread_mutex_t pool_lock;
    pthread_cond_t pool_wake;
    struct job *head, *tail;
    bool pool_stop;
    pthread_t *threads;
    unsigned nthreads;
    unsigned idle;              /* pool threads waiting for a job */
    unsigned njobs;             /* jobs queued, not yet taken */

    atomic_uint lock_waiters;   /* threads in a SETLKW */
};

struct lock_wait {
    struct virtio_fs *fs;
    struct vu_queue *q;
    struct vq_element *e;
};

/* ---- sessions ----------------------------------------------------------- */

static void slot_release_locked(struct session_slot *slot)
{
    if (--slot->refs == 0) {
        fsb_session_free(slot->s);
        free(slot);
    }
}

static void retire_locked(struct virtio_fs *fs)
{
    struct session_slot *old = fs->current;
    if (!old)
        return;
    fs->current = NULL;
    fsb_session_interrupt_all(old->s); /* its guest is gone: stop its lock waits */
    slot_release_locked(old);
}

/* The current session (created on demand), with a reference.  An INIT on
 * an initialized session starts a new one. */
static struct session_slot *session_acquire(struct virtio_fs *fs, bool init)
{
    pthread_mutex_lock(&fs->lock);
    if (init && fs->current && fs->current->s->initialized) {
        log_info("virtio-fs: the guest driver started over: new FUSE session");
        retire_locked(fs);
    }
    if (!fs->current) {
        int err = 0;
        struct session_slot *slot = calloc(1, sizeof(*slot));
        slot->s = slot ? fsb_session_new(fs->export, FSB_DEFAULT_MAX_FRAME, fs->guest, &err) : NULL;
        if (!slot || !slot->s) {
            log_error("virtio-fs: cannot start a FUSE session: %s", strerror(slot ? -err : ENOMEM));
            free(slot);
            pthread_mutex_unlock(&fs->lock);
            return NULL;
        }
        slot->refs = 1;
        fs->current = slot;
    }
    struct session_slot *slot = fs->current;
    slot->refs++;
    pthread_mutex_unlock(&fs->lock);
    return slot;
}

static void session_release(struct virtio_fs *fs, struct session_slot *slot, bool retire)
{
    pthread_mutex_lock(&fs->lock);
    if (retire && fs->current == slot)
        retire_locked(fs);
    slot_release_locked(slot);
    pthread_mutex_unlock(&fs->lock);
}

/* ---- requests ----------------------------------------------------------- */

/* The opcode, read for routing only (the engine validates the request);
 * 0 when the request is too short to have one. */
static uint32_t peek_opcode(const struct vq_element *e)
{
    struct iov_cursor c;
    struct fuse_in_header in;
    iov_cursor_init(&c, e->iov, e->nreadable);
    return iov_cursor_read(&c, &in, sizeof(in)) ? in.opcode : 0;
}

/* Runs E (its OPCODE as routed: the engine reads the header again and
 * validates it; a guest that changed it meanwhile only meets the no-wait
 * rule) through the engine; returns the reply's length.  Only a lock-wait
 * thread may wait (see fsb_engine_process_no_wait). */
static uint32_t execute(struct virtio_fs *fs, struct vq_element *e, uint32_t opcode,
                        bool may_wait)
{
    size_t len = 0;
    struct session_slot *slot = session_acquire(fs, opcode == FUSE_INIT);
    if (slot) {
        const struct iovec *out = e->iov + e->nreadable;
        len = may_wait ? fsb_engine_process(slot->s, e->iov, e->nreadable, out, e->nwritable)
                       : fsb_engine_process_no_wait(slot->s, e->iov, e->nreadable, out,
                                                    e->nwritable);
        /* The guest unmounted: release its inodes and handles now. */
        session_release(fs, slot, opcode == FUSE_DESTROY);
    }
    return (uint32_t)len;
}

static void run_request(struct virtio_fs *fs, struct vu_queue *q, struct vq_element *e,
                        uint32_t opcode)
{
    vu_complete(q, e, execute(fs, e, opcode, false));
}

/* A detached thread: vu_complete is its last touch of anything shared
 * (the device waits for every request before it goes away). */
static void *lock_wait_main(void *arg)
{
    struct lock_wait w = *(struct lock_wait *)arg;
    free(arg);
    uint32_t len = execute(w.fs, w.e, FUSE_SETLKW, true);
    atomic_fetch_sub(&w.fs->lock_waiters, 1);
    vu_complete(w.q, w.e, len);
    return NULL;
}

static bool start_lock_wait(struct virtio_fs *fs, struct vu_queue *q, struct vq_element *e)
{
    if (atomic_fetch_add(&fs->lock_waiters, 1) >= MAX_LOCK_WAITERS)
        goto refused;
    struct lock_wait *w = malloc(sizeof(*w));
    pthread_attr_t attr;
    pthread_t t;
    if (!w)
        goto refused;
    *w = (struct lock_wait){ fs, q, e };
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int err = pthread_create(&t, &attr, lock_wait_main, w);
    pthread_attr_destroy(&attr);
    if (err == 0)
        return true;
    free(w);
refused:
    atomic_fetch_sub(&fs->lock_waiters, 1);
    return false;
}

static void *pool_main(void *arg)
{
    struct virtio_fs *fs = arg;
    pthread_mutex_lock(&fs->pool_lock);
    for (;;) {
        fs->idle++;
        while (!fs->head && !fs->pool_stop)
            pthread_cond_wait(&fs->pool_wake, &fs->pool_lock);
        fs->idle--;
        struct job *j = fs->head;
        if (!j)
            break; /* stopping, and nothing left */
        fs->head = j->next;
        if (!fs->head)
            fs->tail = NULL;
        fs->njobs--;
        pthread_mutex_unlock(&fs->pool_lock);
        run_request(fs, j->q, j->e, j->opcode);
        free(j);
        pthread_mutex_lock(&fs->pool_lock);
    }
    pthread_mutex_unlock(&fs->pool_lock);
    return NULL;
}

/* Hands E to an idle pool thread; false when none is idle (the caller
 * runs it: a queue of jobs would only add hand-offs, the queue thread is
 * as good a worker as any). */
static bool enqueue(struct virtio_fs *fs, struct vu_queue *q, struct vq_element *e,
                    uint32_t opcode)
{
    pthread_mutex_lock(&fs->pool_lock);
    struct job *j = fs->njobs < fs->idle ? malloc(sizeof(*j)) : NULL;
    if (!j) {
        pthread_mutex_unlock(&fs->pool_lock);
        return false;
    }
    *j = (struct job){ .q = q, .e = e, .opcode = opcode };
    fs->njobs++;
    if (fs->tail)
        fs->tail->next = j;
    else
        fs->head = j;
    fs->tail = j;
    pthread_cond_signal(&fs->pool_wake);
    pthread_mutex_unlock(&fs->pool_lock);
    return true;
}

/* vu_device_ops.request: a lock wait gets a thread of its own; a request
 * with others waiting behind it (readahead READs come in bursts) goes to
 * the pool, so that they run in parallel; a lone request, and hiprio's
 * FORGET and INTERRUPT, which never wait, run here with no hand-off. */
static void fs_request(void *dev, struct vu_queue *q, struct vq_element *e)
{
    struct virtio_fs *fs = dev;
    uint32_t opcode = peek_opcode(e); /* read once; see execute() */
    if (opcode == FUSE_SETLKW && start_lock_wait(fs, q, e))
        return;
    if (e->more && fs->nthreads && !fsb_engine_is_urgent(opcode) && enqueue(fs, q, e, opcode))
        return;
    run_request(fs, q, e, opcode);
}

static void fs_interrupt_waits(void *dev)
{
    struct virtio_fs *fs = dev;
    pthread_mutex_lock(&fs->lock);
    if (fs->current)
        fsb_session_interrupt_waiting(fs->current->s);
    pthread_mutex_unlock(&fs->lock);
}

static void fs_reset(void *dev)
{
    struct virtio_fs *fs = dev;
    pthread_mutex_lock(&fs->lock);
    retire_locked(fs);
    pthread_mutex_unlock(&fs->lock);
}

/* ---- the device ----------------------------------------------------------- */

static int pool_start(struct virtio_fs *fs, unsigned n)
{
    if (n == 0)
        return 0;
    fs->threads = calloc(n, sizeof(*fs->threads));
    if (!fs->threads)
        return -ENOMEM;
    for (; fs->nthreads < n; fs->nthreads++)
        if (pthread_create(&fs->threads[fs->nthreads], NULL, pool_main, fs) != 0)
            return -EAGAIN;
    return 0;
}

static void pool_stop(struct virtio_fs *fs)
{
    pthread_mutex_lock(&fs->pool_lock);
    fs->pool_stop = true;
    pthread_cond_broadcast(&fs->pool_wake);
    pthread_mutex_unlock(&fs->pool_lock);
    for (unsigned i = 0; i < fs->nthreads; i++)
        pthread_join(fs->threads[i], NULL);
    free(fs->threads);
}

int virtio_fs_serve(int conn_fd, const struct virtio_fs_config *cfg, int stop_fd)
{
    const struct vu_device_ops ops = {
        .features = 0, /* no VIRTIO_FS_F_NOTIFICATION: QEMU 7.2 has none */
        .poll_us = cfg->poll_us,
        .request = fs_request,
        .interrupt_waits = fs_interrupt_waits,
        .reset = fs_reset,
    };
    struct virtio_fs fs = { .export = cfg->export, .guest = cfg->guest };
    pthread_mutex_init(&fs.lock, NULL);
    pthread_mutex_init(&fs.pool_lock, NULL);
    pthread_cond_init(&fs.pool_wake, NULL);
    int r = pool_start(&fs, cfg->thread_pool_size);
    if (r == 0) {
        r = vhost_user_serve(conn_fd, &ops, &fs, stop_fd);
    } else {
        log_error("virtio-fs: cannot start worker threads: %s", strerror(-r));
        close(conn_fd);
    }
    pool_stop(&fs);
    fs_reset(&fs);
    pthread_cond_destroy(&fs.pool_wake);
    pthread_mutex_destroy(&fs.pool_lock);
    pthread_mutex_destroy(&fs.lock);
    return r;
}
