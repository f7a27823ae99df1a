/*
 * created_handles.c - see created_handles.h.
 *
 * The entries are two arrays in creation order: the named ones, of which
 * the oldest is let go when there are too many, and those found nameless
 * when their turn came, checked no more and kept until their FORGET.  An
 * entry that leaves while requests use it (let go, RELEASEd or forgotten)
 * lives on until its last user gives it back, and that user releases its
 * backend handle.
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

/* Entries in creation order, oldest first. */
struct entries {
    struct fsb_created_entry **e;
    unsigned count, capacity;
};

struct fsb_created_handles {
    pthread_mutex_t lock;
    struct fsb_backend *be;
    uint64_t next;           /* the number of the next id */
    struct entries named;    /* at most CREATED_OPEN_MAX: let go, oldest first */
    struct entries nameless; /* found nameless when their turn came: kept till FORGET */
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

static void free_entries(struct fsb_created_handles *t, struct entries *l)
{
    for (unsigned i = 0; i < l->count; i++) {
        t->be->ops->release(t->be, l->e[i]->fh);
        free(l->e[i]);
    }
    free(l->e);
}

void fsb_created_free(struct fsb_created_handles *t)
{
    if (!t)
        return;
    free_entries(t, &t->named);
    free_entries(t, &t->nameless);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

static int append(struct entries *l, struct fsb_created_entry *e)
{
    if (l->count == l->capacity) {
        unsigned cap = l->capacity ? 2 * l->capacity : 2 * CREATED_OPEN_MAX;
        struct fsb_created_entry **grown = realloc(l->e, cap * sizeof(*grown));
        if (!grown)
            return -ENOMEM;
        l->e = grown;
        l->capacity = cap;
    }
    l->e[l->count++] = e;
    return 0;
}

/* Takes the entry at I out of L, keeping the others in order. */
static struct fsb_created_entry *take_out(struct entries *l, unsigned i)
{
    struct fsb_created_entry *e = l->e[i];
    for (; i + 1 < l->count; i++)
        l->e[i] = l->e[i + 1];
    l->count--;
    return e;
}

/* E leaves the table: returned if nobody uses it, for the caller to
 * release outside the lock; NULL if its last user will.  Caller holds
 * the lock. */
static struct fsb_created_entry *ended(struct fsb_created_entry *e)
{
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

/* With more than CREATED_OPEN_MAX named entries (one more than that, as
 * each add makes at most one), the oldest leaves: let go if its file has a
 * name (returned as ended() does), else kept among the nameless, checked
 * no more.  Caller holds the lock. */
static struct fsb_created_entry *let_oldest_go(struct fsb_created_handles *t)
{
    if (t->named.count <= CREATED_OPEN_MAX)
        return NULL;
    struct fsb_created_entry *e = take_out(&t->named, 0);
    if (!has_a_name(t, e) && append(&t->nameless, e) == 0)
        return NULL;
    return ended(e);
}

int fsb_created_add(struct fsb_created_handles *t, uint64_t node, uint64_t fh, uint64_t *id)
{
    struct fsb_created_entry *e = malloc(sizeof(*e)), *gone = NULL;
    if (!e)
        return -ENOMEM;
    pthread_mutex_lock(&t->lock);
    *e = (struct fsb_created_entry){ .id = FSB_CREATED_FH | t->next, .node = node, .fh = fh,
                                     .live = true };
    int err = append(&t->named, e);
    if (!err) {
        t->next++;
        *id = e->id;
        gone = let_oldest_go(t);
    }
    pthread_mutex_unlock(&t->lock);
    if (err)
        free(e);
    release_entry(t, gone);
    return err;
}

/* The list and position of live id ID (*L NULL if none).  Caller holds
 * the lock. */
static unsigned find(struct fsb_created_handles *t, uint64_t id, struct entries **l)
{
    struct entries *lists[] = { &t->named, &t->nameless };
    for (unsigned k = 0; k < 2; k++)
        for (unsigned i = 0; i < lists[k]->count; i++)
            if (lists[k]->e[i]->id == id) {
                *l = lists[k];
                return i;
            }
    *l = NULL;
    return 0;
}

bool fsb_created_take(struct fsb_created_handles *t, uint64_t id, uint64_t *fh,
                      struct fsb_created_entry **use)
{
    struct entries *l;
    pthread_mutex_lock(&t->lock);
    unsigned i = find(t, id, &l);
    *use = l ? l->e[i] : NULL;
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
    struct entries *l;
    pthread_mutex_lock(&t->lock);
    unsigned i = find(t, id, &l);
    struct fsb_created_entry *gone = l ? ended(take_out(l, i)) : NULL;
    pthread_mutex_unlock(&t->lock);
    release_entry(t, gone);
}

/* The first entry of NODE taken out of L, or NULL.  Caller holds the lock. */
static struct fsb_created_entry *take_node(struct entries *l, uint64_t node)
{
    for (unsigned i = 0; i < l->count; i++)
        if (l->e[i]->node == node)
            return take_out(l, i);
    return NULL;
}

void fsb_created_forget(struct fsb_created_handles *t, uint64_t node)
{
    for (;;) {
        pthread_mutex_lock(&t->lock);
        struct fsb_created_entry *e = take_node(&t->named, node);
        if (!e)
            e = take_node(&t->nameless, node);
        struct fsb_created_entry *gone = e ? ended(e) : NULL;
        pthread_mutex_unlock(&t->lock);
        release_entry(t, gone);
        if (!e)
            return;
    }
}
