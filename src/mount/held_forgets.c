/*
 * held_forgets.c - see held_forgets.h.  One mutex over the pairs; the
 * count beside it is read without the lock by every request forwarded.
 */
#include "mount/held_forgets.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct held_forgets {
    pthread_mutex_t lock;
    pthread_cond_t wake;     /* the flusher: something to hold, or stop */
    _Atomic size_t count;    /* pairs held */
    struct fuse_forget_one one[HELD_FORGETS_MAX];
    uint64_t unique;         /* of the first FORGET held: the batch's */
    uint64_t takes;          /* batches taken so far */
    bool flusher_idle;       /* waits for a hold, with no timeout */
    bool stop;
    void (*send)(void *arg, struct iovec *iov, int cnt);
    void *arg;
    pthread_t flusher;
};

/* The pairs of request IH into *ONE, at most ROOM; their number, or -1
 * for a message that is no FORGET, too short, or over ROOM. */
static long pairs_of(const struct fuse_in_header *ih, const void *arg, size_t len,
                     struct fuse_forget_one *one, size_t room)
{
    if (ih->opcode == FUSE_FORGET) {
        struct fuse_forget_in in;
        if (len < sizeof(in) || room < 1)
            return -1;
        memcpy(&in, arg, sizeof(in)); /* the request's bytes may not be aligned */
        one[0] = (struct fuse_forget_one){ .nodeid = ih->nodeid, .nlookup = in.nlookup };
        return 1;
    }
    struct fuse_batch_forget_in in;
    if (ih->opcode != FUSE_BATCH_FORGET || len < sizeof(in))
        return -1;
    memcpy(&in, arg, sizeof(in));
    if (in.count > room || (len - sizeof(in)) / sizeof(*one) < in.count)
        return -1;
    memcpy(one, (const char *)arg + sizeof(in), in.count * sizeof(*one));
    return in.count;
}

bool held_forgets_hold(struct held_forgets *h, const struct fuse_in_header *ih, const void *arg,
                       size_t len)
{
    if (!h || (ih->opcode != FUSE_FORGET && ih->opcode != FUSE_BATCH_FORGET))
        return false;
    pthread_mutex_lock(&h->lock);
    size_t n = atomic_load_explicit(&h->count, memory_order_relaxed);
    long got = pairs_of(ih, arg, len, h->one + n, HELD_FORGETS_MAX - n);
    if (got > 0) {
        if (!n)
            h->unique = ih->unique;
        atomic_store_explicit(&h->count, n + (size_t)got, memory_order_release);
        if (h->flusher_idle) {
            h->flusher_idle = false;
            pthread_cond_signal(&h->wake);
        }
    }
    pthread_mutex_unlock(&h->lock);
    return got >= 0; /* an empty batch is held too: nothing to send */
}

/* Caller holds the lock. */
static size_t take_locked(struct held_forgets *h, struct held_batch *b)
{
    size_t n = atomic_load_explicit(&h->count, memory_order_relaxed);
    if (!n)
        return 0;
    size_t len = offsetof(struct held_batch, one) + n * sizeof(b->one[0]);
    b->ih = (struct fuse_in_header){ .len = (uint32_t)len, .opcode = FUSE_BATCH_FORGET,
                                     .unique = h->unique };
    b->in = (struct fuse_batch_forget_in){ .count = (uint32_t)n };
    memcpy(b->one, h->one, n * sizeof(b->one[0]));
    atomic_store_explicit(&h->count, 0, memory_order_relaxed);
    h->takes++;
    return len;
}

size_t held_forgets_take(struct held_forgets *h, struct held_batch *b)
{
    if (!h || !atomic_load_explicit(&h->count, memory_order_acquire))
        return 0;
    pthread_mutex_lock(&h->lock);
    size_t len = take_locked(h, b);
    pthread_mutex_unlock(&h->lock);
    return len;
}

static struct timespec in_ms(unsigned ms)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_nsec += (long)ms * 1000000;
    t.tv_sec += t.tv_nsec / 1000000000;
    t.tv_nsec %= 1000000000;
    return t;
}

/*
 * Sleeps until something is held, then wakes every HELD_FORGETS_MS: what
 * is held after a whole period in which no request took any (none came
 * to carry them) is sent from here, so nothing waits much longer than two
 * periods.  With nothing held it sleeps again without a timeout.
 */
static void *flusher_main(void *arg)
{
    struct held_forgets *h = arg;
    struct held_batch b;
    pthread_mutex_lock(&h->lock);
    while (!h->stop) {
        if (!atomic_load_explicit(&h->count, memory_order_relaxed)) {
            h->flusher_idle = true;
            pthread_cond_wait(&h->wake, &h->lock);
            continue;
        }
        uint64_t seen = h->takes;
        struct timespec until = in_ms(HELD_FORGETS_MS);
        while (!h->stop && pthread_cond_timedwait(&h->wake, &h->lock, &until) != ETIMEDOUT)
            ;
        if (h->stop)
            break;
        size_t len = h->takes == seen ? take_locked(h, &b) : 0;
        if (len) {
            pthread_mutex_unlock(&h->lock);
            struct iovec iov = { &b, len };
            h->send(h->arg, &iov, 1);
            pthread_mutex_lock(&h->lock);
        }
    }
    pthread_mutex_unlock(&h->lock);
    return NULL;
}

struct held_forgets *held_forgets_new(void (*send)(void *arg, struct iovec *iov, int cnt),
                                      void *arg)
{
    struct held_forgets *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    pthread_mutex_init(&h->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&h->wake, &ca);
    pthread_condattr_destroy(&ca);
    h->send = send;
    h->arg = arg;
    if (pthread_create(&h->flusher, NULL, flusher_main, h) != 0) {
        pthread_cond_destroy(&h->wake);
        pthread_mutex_destroy(&h->lock);
        free(h);
        return NULL;
    }
    return h;
}

void held_forgets_free(struct held_forgets *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->lock);
    h->stop = true;
    pthread_cond_signal(&h->wake);
    pthread_mutex_unlock(&h->lock);
    pthread_join(h->flusher, NULL);
    pthread_cond_destroy(&h->wake);
    pthread_mutex_destroy(&h->lock);
    free(h);
}
