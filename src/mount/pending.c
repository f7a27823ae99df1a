/*
 * pending.c - the in-flight request set of pending.h: a fixed hash table
 * with linear probing, one mutex, and a condition variable for
 * back-pressure.  Deletion shifts later entries back (Knuth's algorithm R)
 * so the table never fills with tombstones.
 */
#include "mount/pending.h"

#include <errno.h>
#include <string.h>

#define SLOT_MASK (PENDING_SLOTS - 1)

_Static_assert((PENDING_SLOTS & SLOT_MASK) == 0, "PENDING_SLOTS must be a power of two");

/* The kernel's uniques step by 2 (bit 0 marks INTERRUPT ids): drop that bit,
 * then spread with a multiplicative hash. */
static size_t home_slot(uint64_t unique)
{
    return (size_t)(((unique >> 1) * 0x9E3779B97F4A7C15ULL) >> 32) & SLOT_MASK;
}

/* The slot holding UNIQUE, or -1.  Caller holds the lock. */
static long find_slot(const struct pending *p, uint64_t unique)
{
    for (size_t i = home_slot(unique);; i = (i + 1) & SLOT_MASK) {
        if (p->slots[i].unique == unique)
            return (long)i;
        if (p->slots[i].unique == 0)
            return -1;
    }
}

/* True if HOME lies cyclically in (hole, j]: the entry at j must then stay,
 * since moving it into the hole would put it before its home slot. */
static bool stays(size_t hole, size_t j, size_t home)
{
    return hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
}

/* Empties slot HOLE and moves back any later entry of the same probe run that
 * would otherwise become unreachable. */
static void remove_slot(struct pending *p, size_t hole)
{
    size_t j = hole;
    p->slots[hole].unique = 0;
    for (;;) {
        j = (j + 1) & SLOT_MASK;
        if (p->slots[j].unique == 0)
            return;
        if (stays(hole, j, home_slot(p->slots[j].unique)))
            continue;
        p->slots[hole] = p->slots[j];
        p->slots[j].unique = 0;
        hole = j;
    }
}

void pending_init(struct pending *p)
{
    memset(p, 0, sizeof(*p));
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->room, NULL);
}

int pending_add(struct pending *p, uint64_t unique, struct reply_dest *dest)
{
    int ret = 0;
    pthread_mutex_lock(&p->lock);
    while (!p->closed && p->count >= PENDING_MAX)
        pthread_cond_wait(&p->room, &p->lock);
    if (p->closed) {
        ret = -ENOTCONN;
    } else if (find_slot(p, unique) >= 0) {
        ret = -EEXIST;
    } else {
        size_t i = home_slot(unique);
        while (p->slots[i].unique != 0)
            i = (i + 1) & SLOT_MASK;
        p->slots[i] = (struct pending_entry){ .unique = unique, .dest = dest };
        p->count++;
    }
    pthread_mutex_unlock(&p->lock);
    return ret;
}

struct reply_dest *pending_take(struct pending *p, uint64_t unique)
{
    struct reply_dest *dest = NULL;
    pthread_mutex_lock(&p->lock);
    long i = unique ? find_slot(p, unique) : -1;
    if (i >= 0) {
        dest = p->slots[i].dest;
        remove_slot(p, (size_t)i);
        p->count--;
        pthread_cond_signal(&p->room);
    }
    pthread_mutex_unlock(&p->lock);
    return dest;
}

struct reply_dest *pending_swap(struct pending *p, uint64_t unique, struct reply_dest *dest)
{
    pthread_mutex_lock(&p->lock);
    long i = unique ? find_slot(p, unique) : -1;
    struct reply_dest *old = i >= 0 ? p->slots[i].dest : NULL;
    if (i >= 0)
        p->slots[i].dest = dest;
    pthread_mutex_unlock(&p->lock);
    return old;
}

struct reply_dest *pending_find(struct pending *p, uint64_t unique)
{
    pthread_mutex_lock(&p->lock);
    long i = unique ? find_slot(p, unique) : -1;
    struct reply_dest *dest = i >= 0 ? p->slots[i].dest : NULL;
    pthread_mutex_unlock(&p->lock);
    return dest;
}

void pending_close(struct pending *p,
                   void (*fail)(uint64_t unique, struct reply_dest *dest, void *arg), void *arg)
{
    pthread_mutex_lock(&p->lock);
    p->closed = true;
    for (size_t i = 0; i < PENDING_SLOTS; i++) {
        if (p->slots[i].unique == 0)
            continue;
        fail(p->slots[i].unique, p->slots[i].dest, arg);
        p->slots[i].unique = 0;
    }
    p->count = 0;
    pthread_cond_broadcast(&p->room);
    pthread_mutex_unlock(&p->lock);
}
