/*
 * created_handles.c - see created_handles.h.
 *
 * The live entries form a ring, oldest first; an entry that leaves it
 * while requests use it (let go, or RELEASEd) lives on, out of the ring,
 * until its last user gives it back, and that user releases its backend
 * handle.
 */
#include "engine/created_handles.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

struct fsb_created_entry {
    uint64_t id;
    uint64_t fh;    /* the backend handle */
    unsigned users; /* requests using it now */
    bool live;      /* in the ring: fsb_created_take finds it */
};

struct fsb_created_handles {
    pthread_mutex_t lock;
    struct fsb_backend *be;
    uint64_t next; /* the number of the next id */
    struct fsb_created_entry *ring[CREATED_OPEN_MAX];
    unsigned head, count; /* ring[head] is the oldest */
};

struct fsb_created_handles *fsb_created_new(struct fsb_backend *be)
{
    struct fsb_created_handles *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    pthread_mutex_init(&t->lock, NULL);
    t->be = be;
    t->next = 1;
    return t;
}

void fsb_created_free(struct fsb_created_handles *t)
{
    if (!t)
        return;
    for (unsigned i = 0; i < t->count; i++) {
        struct fsb_created_entry *e = t->ring[(t->head + i) % CREATED_OPEN_MAX];
        t->be->ops->release(t->be, e->fh);
        free(e);
    }
    pthread_mutex_destroy(&t->lock);
    free(t);
}

static struct fsb_created_entry **slot(struct fsb_created_handles *t, unsigned i)
{
    return &t->ring[(t->head + i) % CREATED_OPEN_MAX];
}

/* Takes E out of the ring's position I (keeping the others in order) and
 * returns it if nobody uses it, for the caller to release outside the
 * lock; NULL if a user will.  Caller holds the lock. */
static struct fsb_created_entry *unlink_at(struct fsb_created_handles *t, unsigned i)
{
    struct fsb_created_entry *e = *slot(t, i);
    for (; i + 1 < t->count; i++)
        *slot(t, i) = *slot(t, i + 1);
    t->count--;
    e->live = false;
    return e->users ? NULL : e;
}

static void release_entry(struct fsb_created_handles *t, struct fsb_created_entry *e)
{
    if (!e)
        return;
    t->be->ops->release(t->be, e->fh);
    free(e);
}

int fsb_created_add(struct fsb_created_handles *t, uint64_t fh, uint64_t *id)
{
    struct fsb_created_entry *e = malloc(sizeof(*e)), *gone = NULL;
    if (!e)
        return -ENOMEM;
    pthread_mutex_lock(&t->lock);
    if (t->count == CREATED_OPEN_MAX)
        gone = unlink_at(t, 0);
    *e = (struct fsb_created_entry){ .id = FSB_CREATED_FH | t->next++, .fh = fh, .live = true };
    t->count++;
    *slot(t, t->count - 1) = e;
    *id = e->id;
    pthread_mutex_unlock(&t->lock);
    release_entry(t, gone);
    return 0;
}

/* The ring position of live id ID, or -1.  Caller holds the lock. */
static int find(struct fsb_created_handles *t, uint64_t id)
{
    for (unsigned i = 0; i < t->count; i++)
        if ((*slot(t, i))->id == id)
            return (int)i;
    return -1;
}

bool fsb_created_take(struct fsb_created_handles *t, uint64_t id, uint64_t *fh,
                      struct fsb_created_entry **use)
{
    pthread_mutex_lock(&t->lock);
    int i = find(t, id);
    *use = i < 0 ? NULL : *slot(t, (unsigned)i);
    if (*use) {
        (*use)->users++;
        *fh = (*use)->fh;
    }
    pthread_mutex_unlock(&t->lock);
    return *use != NULL;
}

void fsb_created_give(struct fsb_created_handles *t, struct fsb_created_entry *use)
{
    pthread_mutex_lock(&t->lock);
    bool last = --use->users == 0 && !use->live;
    pthread_mutex_unlock(&t->lock);
    if (last)
        release_entry(t, use);
}

void fsb_created_release(struct fsb_created_handles *t, uint64_t id)
{
    pthread_mutex_lock(&t->lock);
    int i = find(t, id);
    struct fsb_created_entry *gone = i < 0 ? NULL : unlink_at(t, (unsigned)i);
    pthread_mutex_unlock(&t->lock);
    release_entry(t, gone);
}
