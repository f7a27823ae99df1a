/*
 * created_handles.c - see created_handles.h.
 *
 * The entries are an array in creation order, oldest first.  An entry
 * that leaves it while requests use it (let go, RELEASEd or forgotten)
 * lives on outside it until its last user gives it back, and that user
 * releases its backend handle.
 */
#include "engine/created_handles.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>

struct fsb_created_entry {
    uint64_t id;
    uint64_t node;  /* the created file's node */
    uint64_t fh;    /* the backend handle */
    unsigned users; /* requests using it now */
    bool live;      /* in the array: fsb_created_take finds it */
};

struct fsb_created_handles {
    pthread_mutex_t lock;
    struct fsb_backend *be;
    uint64_t next; /* the number of the next id */
    struct fsb_created_entry **all;
    unsigned count, capacity;
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
        t->be->ops->release(t->be, t->all[i]->fh);
        free(t->all[i]);
    }
    free(t->all);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

/* Takes the entry at I out of the array (keeping the others in order)
 * and returns it if nobody uses it, for the caller to release outside the
 * lock; NULL if a user will.  Caller holds the lock. */
static struct fsb_created_entry *unlink_at(struct fsb_created_handles *t, unsigned i)
{
    struct fsb_created_entry *e = t->all[i];
    for (; i + 1 < t->count; i++)
        t->all[i] = t->all[i + 1];
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

/* Whether the file of E still has a name: one that has none (unlinked, or
 * an O_TMPFILE not linked yet) lives only through its open handles, so it
 * is never let go, only forgotten. */
static bool has_a_name(struct fsb_created_handles *t, const struct fsb_created_entry *e)
{
    struct stat st;
    return t->be->ops->getattr(t->be, e->node, e->fh, &st) == 0 && st.st_nlink > 0;
}

/* With more than CREATED_OPEN_MAX entries, the oldest one whose file has
 * a name leaves (returned as unlink_at does).  Caller holds the lock. */
static struct fsb_created_entry *let_oldest_go(struct fsb_created_handles *t)
{
    if (t->count <= CREATED_OPEN_MAX)
        return NULL;
    for (unsigned i = 0; i < t->count; i++)
        if (has_a_name(t, t->all[i]))
            return unlink_at(t, i);
    return NULL; /* all nameless: the open-file budget bounds them */
}

static int make_room(struct fsb_created_handles *t)
{
    if (t->count < t->capacity)
        return 0;
    unsigned cap = t->capacity ? 2 * t->capacity : 2 * CREATED_OPEN_MAX;
    struct fsb_created_entry **all = realloc(t->all, cap * sizeof(*all));
    if (!all)
        return -ENOMEM;
    t->all = all;
    t->capacity = cap;
    return 0;
}

int fsb_created_add(struct fsb_created_handles *t, uint64_t node, uint64_t fh, uint64_t *id)
{
    struct fsb_created_entry *e = malloc(sizeof(*e)), *gone = NULL;
    if (!e)
        return -ENOMEM;
    pthread_mutex_lock(&t->lock);
    int err = make_room(t);
    if (!err) {
        *e = (struct fsb_created_entry){ .id = FSB_CREATED_FH | t->next++, .node = node,
                                         .fh = fh, .live = true };
        t->all[t->count++] = e;
        *id = e->id;
        gone = let_oldest_go(t);
    }
    pthread_mutex_unlock(&t->lock);
    if (err)
        free(e);
    release_entry(t, gone);
    return err;
}

/* The position of live id ID, or -1.  Caller holds the lock. */
static int find(const struct fsb_created_handles *t, uint64_t id)
{
    for (unsigned i = 0; i < t->count; i++)
        if (t->all[i]->id == id)
            return (int)i;
    return -1;
}

bool fsb_created_take(struct fsb_created_handles *t, uint64_t id, uint64_t *fh,
                      struct fsb_created_entry **use)
{
    pthread_mutex_lock(&t->lock);
    int i = find(t, id);
    *use = i < 0 ? NULL : t->all[i];
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

void fsb_created_forget(struct fsb_created_handles *t, uint64_t node)
{
    for (;;) {
        struct fsb_created_entry *gone = NULL;
        bool found = false;
        pthread_mutex_lock(&t->lock);
        for (unsigned i = 0; i < t->count && !found; i++)
            if (t->all[i]->node == node) {
                found = true;
                gone = unlink_at(t, i);
            }
        pthread_mutex_unlock(&t->lock);
        release_entry(t, gone);
        if (!found)
            return;
    }
}
