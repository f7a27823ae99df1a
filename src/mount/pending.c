/*
 * pending.c - the in-flight request set of pending.h: a fixed hash table
 * (common/u64_table.h) from unique to destination, one mutex, and a
 * condition variable for back-pressure.
 */
#include "mount/pending.h"

#include <errno.h>
#include <string.h>

_Static_assert((PENDING_SLOTS & (PENDING_SLOTS - 1)) == 0, "PENDING_SLOTS must be a power of two");

void pending_init(struct pending *p)
{
    memset(p, 0, sizeof(*p));
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->room, NULL);
    fsb_u64_table_init(&p->table, p->slots, PENDING_SLOTS);
}

static int add_locked(struct pending *p, uint64_t unique, struct reply_dest *dest)
{
    return p->closed ? -ENOTCONN : fsb_u64_table_add(&p->table, unique, dest);
}

int pending_add(struct pending *p, uint64_t unique, struct reply_dest *dest)
{
    pthread_mutex_lock(&p->lock);
    while (!p->closed && p->table.count >= PENDING_MAX)
        pthread_cond_wait(&p->room, &p->lock);
    int ret = add_locked(p, unique, dest);
    pthread_mutex_unlock(&p->lock);
    return ret;
}

int pending_try_add(struct pending *p, uint64_t unique, struct reply_dest *dest)
{
    pthread_mutex_lock(&p->lock);
    int ret = !p->closed && p->table.count >= PENDING_MAX ? -EAGAIN : add_locked(p, unique, dest);
    pthread_mutex_unlock(&p->lock);
    return ret;
}

struct reply_dest *pending_take(struct pending *p, uint64_t unique)
{
    void *dest = NULL;
    pthread_mutex_lock(&p->lock);
    if (unique && fsb_u64_table_remove(&p->table, unique, &dest))
        pthread_cond_signal(&p->room);
    pthread_mutex_unlock(&p->lock);
    return dest;
}

struct reply_dest *pending_swap(struct pending *p, uint64_t unique, struct reply_dest *dest)
{
    pthread_mutex_lock(&p->lock);
    struct fsb_u64_slot *s = unique ? fsb_u64_table_find(&p->table, unique) : NULL;
    struct reply_dest *old = s ? s->value : NULL;
    if (s)
        s->value = dest;
    pthread_mutex_unlock(&p->lock);
    return old;
}

struct reply_dest *pending_find(struct pending *p, uint64_t unique)
{
    pthread_mutex_lock(&p->lock);
    struct fsb_u64_slot *s = unique ? fsb_u64_table_find(&p->table, unique) : NULL;
    struct reply_dest *dest = s ? s->value : NULL;
    pthread_mutex_unlock(&p->lock);
    return dest;
}

struct failing {
    void (*fail)(uint64_t unique, struct reply_dest *dest, void *arg);
    void *arg;
};

static void fail_one(uint64_t unique, void *dest, void *arg)
{
    struct failing *f = arg;
    f->fail(unique, dest, f->arg);
}

void pending_close(struct pending *p,
                   void (*fail)(uint64_t unique, struct reply_dest *dest, void *arg), void *arg)
{
    struct failing f = { fail, arg };
    pthread_mutex_lock(&p->lock);
    p->closed = true;
    fsb_u64_table_clear(&p->table, fail_one, &f);
    pthread_cond_broadcast(&p->room);
    pthread_mutex_unlock(&p->lock);
}
