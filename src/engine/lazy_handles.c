/*
 * lazy_handles.c - see lazy_handles.h.  One mutex per session, never held
 * across a backend call: opens and releases happen outside it.
 */
#include "engine/lazy_handles.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "common/u64_table.h"

/* The table starts small (most sessions map few handles at once) and
 * doubles up to what MAX entries need. */
#define FIRST_SLOTS 64

struct fsb_lazy_entry {
    uint64_t fh;    /* the backend's */
    uint64_t node;  /* the node it was opened for: the only one it serves */
    unsigned users; /* requests using it now */
    bool mapped;    /* false once released: the last user releases fh */
};

struct fsb_lazy_handles {
    struct fsb_backend *be;
    size_t max;
    pthread_mutex_t lock;
    struct fsb_u64_table map; /* lazy fh -> struct fsb_lazy_entry */
};

struct fsb_lazy_handles *fsb_lazy_handles_new(struct fsb_backend *be, size_t max)
{
    struct fsb_lazy_handles *lh = calloc(1, sizeof(*lh));
    struct fsb_u64_slot *slots = calloc(FIRST_SLOTS, sizeof(*slots));
    if (!lh || !slots) {
        free(lh);
        free(slots);
        return NULL;
    }
    lh->be = be;
    lh->max = max;
    pthread_mutex_init(&lh->lock, NULL);
    fsb_u64_table_init(&lh->map, slots, FIRST_SLOTS);
    return lh;
}

static void release_entry(uint64_t key, void *value, void *arg)
{
    struct fsb_lazy_handles *lh = arg;
    struct fsb_lazy_entry *e = value;
    (void)key;
    lh->be->ops->release(lh->be, e->fh);
    free(e);
}

void fsb_lazy_handles_free(struct fsb_lazy_handles *lh)
{
    if (!lh)
        return;
    fsb_u64_table_clear(&lh->map, release_entry, lh);
    free(lh->map.slots);
    pthread_mutex_destroy(&lh->lock);
    free(lh);
}

/* Doubles the table; false without memory.  Caller holds the lock. */
static bool grow(struct fsb_lazy_handles *lh)
{
    size_t n = (lh->map.mask + 1) * 2;
    struct fsb_u64_slot *slots = calloc(n, sizeof(*slots)), *old = lh->map.slots;
    if (!slots)
        return false;
    size_t old_n = lh->map.mask + 1;
    fsb_u64_table_init(&lh->map, slots, n);
    for (size_t i = 0; i < old_n; i++)
        if (old[i].used)
            fsb_u64_table_add(&lh->map, old[i].key, old[i].value);
    free(old);
    return true;
}

/* Maps LAZY to E.  Caller holds the lock; -EMFILE when full. */
static int map_add(struct fsb_lazy_handles *lh, uint64_t lazy, struct fsb_lazy_entry *e)
{
    if (lh->map.count >= lh->max)
        return -EMFILE;
    if (lh->map.count >= lh->map.limit && !grow(lh))
        return -EMFILE;
    return fsb_u64_table_add(&lh->map, lazy, e);
}

/* LAZY's entry with one user more, or NULL: absent (*ERR 0), or opened
 * for another node than NODE (*ERR -EBADF).  Caller holds the lock. */
static struct fsb_lazy_entry *find_and_use(struct fsb_lazy_handles *lh, uint64_t lazy,
                                           uint64_t node, int *err)
{
    struct fsb_u64_slot *slot = fsb_u64_table_find(&lh->map, lazy);
    struct fsb_lazy_entry *e = slot ? slot->value : NULL;
    *err = e && e->node != node ? -EBADF : 0;
    if (!e || *err)
        return NULL;
    e->users++;
    return e;
}

/* Maps a handle just opened (FH) for NODE, or uses the one a racing
 * request mapped meanwhile.  Returns the entry used, or NULL with *err;
 * FH is released unless it was mapped. */
static struct fsb_lazy_entry *map_opened(struct fsb_lazy_handles *lh, uint64_t lazy,
                                         uint64_t node, uint64_t fh, int *err)
{
    struct fsb_lazy_entry *e = malloc(sizeof(*e));
    if (e)
        *e = (struct fsb_lazy_entry){ .fh = fh, .node = node, .users = 1, .mapped = true };
    pthread_mutex_lock(&lh->lock);
    struct fsb_lazy_entry *won = find_and_use(lh, lazy, node, err);
    if (!won && !*err)
        *err = !e ? -ENOMEM : map_add(lh, lazy, e);
    pthread_mutex_unlock(&lh->lock);
    if (won || *err) {
        free(e);
        lh->be->ops->release(lh->be, fh);
        return won;
    }
    return e;
}

int fsb_lazy_take(struct fsb_lazy_handles *lh, uint64_t lazy, uint64_t node,
                  fsb_lazy_open_fn open, void *arg, uint64_t *fh, struct fsb_lazy_entry **use)
{
    int err;
    pthread_mutex_lock(&lh->lock);
    struct fsb_lazy_entry *e = find_and_use(lh, lazy, node, &err);
    bool full = lh->map.count >= lh->max;
    pthread_mutex_unlock(&lh->lock);
    if (err)
        return err;
    if (!e && !open)
        return -ENOENT;
    if (!e && full)
        return -EMFILE; /* before opening: a full map costs the host nothing */
    if (!e) {
        uint64_t opened;
        err = open(arg, &opened);
        if (err)
            return err;
        e = map_opened(lh, lazy, node, opened, &err);
    }
    if (!e)
        return err;
    *fh = e->fh;
    *use = e;
    return 0;
}

void fsb_lazy_give(struct fsb_lazy_handles *lh, struct fsb_lazy_entry *use)
{
    pthread_mutex_lock(&lh->lock);
    bool last = --use->users == 0 && !use->mapped;
    pthread_mutex_unlock(&lh->lock);
    if (last) {
        lh->be->ops->release(lh->be, use->fh);
        free(use);
    }
}

int fsb_lazy_release(struct fsb_lazy_handles *lh, uint64_t lazy)
{
    void *value = NULL;
    pthread_mutex_lock(&lh->lock);
    struct fsb_lazy_entry *e = fsb_u64_table_remove(&lh->map, lazy, &value) ? value : NULL;
    bool now = e && e->users == 0;
    if (e)
        e->mapped = false;
    pthread_mutex_unlock(&lh->lock);
    if (now) {
        lh->be->ops->release(lh->be, e->fh);
        free(e);
    }
    return 0;
}

size_t fsb_lazy_count(struct fsb_lazy_handles *lh)
{
    pthread_mutex_lock(&lh->lock);
    size_t n = lh->map.count;
    pthread_mutex_unlock(&lh->lock);
    return n;
}
