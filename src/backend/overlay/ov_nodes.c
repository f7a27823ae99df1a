/*
 * ov_nodes.c - the overlay backend's node table (see ov_internal.h).
 *
 * Two maps: by node id (the guest's name for a node) and by key, the node
 * id of its top layer in that layer's instance (upper ids with the top bit
 * set), which is how a repeated lookup finds the node again.  A node holds
 * one lookup in each layer instance and a reference on its parent; both go
 * when the guest forgets it and no operation uses it.
 *
 * Inode numbers (what the guest's st_ino shows): an object that exists in
 * LOWER keeps LOWER's st_ino, before and after its copy-up (the node
 * remembers it, and the copy carries it in an xattr for later sessions:
 * ov_copy_up.c), so git's index and tar see no change.  An object that
 * exists only in UPPER shows UPPER's st_ino; when UPPER is on another
 * filesystem than LOWER, with the top bit set, so that it cannot collide
 * with a LOWER number (the idea of overlayfs's xino, which puts the layer's
 * filesystem id in the high bits).
 */
#include "backend/overlay/ov_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define UPPER_KEY_BIT (1ull << 63)
#define XINO_UPPER_BIT (1ull << 63)

static size_t bucket(const struct overlay *ov, uint64_t v)
{
    return (size_t)((v * 0x9e3779b97f4a7c15ull) >> 17) & (ov->nbuckets - 1);
}

static uint64_t key_of(const struct ov_node *n)
{
    return n->upper ? (n->upper | UPPER_KEY_BIT) : n->lower;
}

static void link_id(struct overlay *ov, struct ov_node *n)
{
    size_t b = bucket(ov, n->nodeid);
    n->next_by_id = ov->by_id[b];
    ov->by_id[b] = n;
}

static void link_key(struct overlay *ov, struct ov_node *n)
{
    size_t b = bucket(ov, key_of(n));
    n->next_by_key = ov->by_key[b];
    ov->by_key[b] = n;
}

static void unlink_id(struct overlay *ov, struct ov_node *n)
{
    struct ov_node **p = &ov->by_id[bucket(ov, n->nodeid)];
    while (*p && *p != n)
        p = &(*p)->next_by_id;
    if (*p)
        *p = n->next_by_id;
}

static void unlink_key(struct overlay *ov, struct ov_node *n)
{
    struct ov_node **p = &ov->by_key[bucket(ov, key_of(n))];
    while (*p && *p != n)
        p = &(*p)->next_by_key;
    if (*p)
        *p = n->next_by_key;
}

static struct ov_node *find_id(struct overlay *ov, uint64_t id)
{
    struct ov_node *n = ov->by_id[bucket(ov, id)];
    while (n && n->nodeid != id)
        n = n->next_by_id;
    return n;
}

static struct ov_node *find_key(struct overlay *ov, uint64_t key)
{
    struct ov_node *n = ov->by_key[bucket(ov, key)];
    while (n && key_of(n) != key)
        n = n->next_by_key;
    return n;
}

static int alloc_maps(struct overlay *ov, size_t nbuckets)
{
    struct ov_node **id = calloc(nbuckets, sizeof(*id)), **key = calloc(nbuckets, sizeof(*key));
    if (!id || !key) {
        free(id);
        free(key);
        return -ENOMEM;
    }
    ov->by_id = id;
    ov->by_key = key;
    ov->nbuckets = nbuckets;
    return 0;
}

/* Doubles the maps when they get crowded; a failed allocation only leaves
 * longer chains.  Called with the lock held. */
static void grow_maps(struct overlay *ov)
{
    struct ov_node **old_id = ov->by_id, **old_key = ov->by_key;
    size_t old_n = ov->nbuckets;
    if (alloc_maps(ov, old_n * 2) < 0)
        return;
    for (size_t i = 0; i < old_n; i++) {
        for (struct ov_node *n = old_id[i], *next; n; n = next) {
            next = n->next_by_id;
            link_id(ov, n);
            link_key(ov, n);
        }
    }
    free(old_id);
    free(old_key);
}

ino_t ov_upper_ino(const struct overlay *ov, ino_t ino)
{
    return ov->same_fs ? ino : (ino_t)((uint64_t)ino | XINO_UPPER_BIT);
}

int ov_nodes_init(struct overlay *ov, size_t max_nodes, const struct stat *root_attr)
{
    pthread_mutex_init(&ov->lock, NULL);
    ov->max_nodes = max_nodes;
    ov->next_nodeid = FSB_ROOT_NODEID + 1;
    if (alloc_maps(ov, 1024) < 0)
        return -ENOMEM;
    struct ov_node *root = calloc(1, sizeof(*root));
    if (!root || !(root->name = strdup("")))
        return free(root), -ENOMEM;
    *root = (struct ov_node){ .nodeid = FSB_ROOT_NODEID, .nlookup = 1, .upper = FSB_ROOT_NODEID,
                              .lower = FSB_ROOT_NODEID, .type = S_IFDIR,
                              .ino = root_attr->st_ino, .name = root->name };
    ov->root = root;
    link_id(ov, root);
    link_key(ov, root);
    ov->count = 1;
    return 0;
}

static void node_free(struct ov_node *n)
{
    free(n->name);
    free(n);
}

void ov_nodes_destroy(struct overlay *ov)
{
    for (size_t i = 0; ov->by_id && i < ov->nbuckets; i++) {
        for (struct ov_node *n = ov->by_id[i], *next; n; n = next) {
            next = n->next_by_id;
            node_free(n);
        }
    }
    free(ov->by_id);
    free(ov->by_key);
    pthread_mutex_destroy(&ov->lock);
}

struct ov_node *ov_get(struct overlay *ov, uint64_t nodeid)
{
    pthread_mutex_lock(&ov->lock);
    struct ov_node *n = find_id(ov, nodeid);
    if (n)
        n->refs++;
    pthread_mutex_unlock(&ov->lock);
    return n;
}

void ov_ref(struct overlay *ov, struct ov_node *n)
{
    pthread_mutex_lock(&ov->lock);
    n->refs++;
    pthread_mutex_unlock(&ov->lock);
}

/* Unlinks N if nothing refers to it any more: true if the caller must
 * release it (after dropping the lock).  Called with the lock held. */
static bool unused(struct overlay *ov, struct ov_node *n)
{
    if (n->nlookup || n->refs || n == ov->root)
        return false;
    unlink_id(ov, n);
    unlink_key(ov, n);
    ov->count--;
    return true;
}

/* Gives back a dead node's layer lookups and its parent reference (which
 * may free the parent in turn). */
static void release_dead(struct overlay *ov, struct ov_node *n)
{
    while (n) {
        if (n->upper)
            ov->upper->ops->forget(ov->upper, n->upper, 1);
        if (n->lower)
            ov->lower->ops->forget(ov->lower, n->lower, 1);
        struct ov_node *parent = n->parent;
        node_free(n);
        n = NULL;
        if (parent) {
            pthread_mutex_lock(&ov->lock);
            parent->refs--;
            n = unused(ov, parent) ? parent : NULL;
            pthread_mutex_unlock(&ov->lock);
        }
    }
}

void ov_put(struct overlay *ov, struct ov_node *n)
{
    pthread_mutex_lock(&ov->lock);
    n->refs--;
    bool dead = unused(ov, n);
    pthread_mutex_unlock(&ov->lock);
    if (dead)
        release_dead(ov, n);
}

bool ov_forget(struct fsb_backend *be, uint64_t nodeid, uint64_t nlookup)
{
    struct overlay *ov = ov_of(be);
    pthread_mutex_lock(&ov->lock);
    struct ov_node *n = find_id(ov, nodeid);
    bool dead = false, unknown = !n;
    if (n && n != ov->root) {
        n->nlookup = nlookup > n->nlookup ? 0 : n->nlookup - nlookup;
        unknown = n->nlookup == 0;
        dead = unused(ov, n);
    }
    pthread_mutex_unlock(&ov->lock);
    if (dead)
        release_dead(ov, n);
    return unknown;
}

void ov_add_lookup(struct overlay *ov, struct ov_node *n)
{
    pthread_mutex_lock(&ov->lock);
    n->nlookup++;
    pthread_mutex_unlock(&ov->lock);
}

void ov_layers(struct overlay *ov, const struct ov_node *n, uint64_t *upper, uint64_t *lower)
{
    pthread_mutex_lock(&ov->lock);
    if (upper)
        *upper = n->upper;
    if (lower)
        *lower = n->lower;
    pthread_mutex_unlock(&ov->lock);
}

char *ov_name_of(struct overlay *ov, const struct ov_node *n, struct ov_node **parent)
{
    pthread_mutex_lock(&ov->lock);
    char *name = strdup(n->name);
    *parent = n->parent;
    if (*parent)
        (*parent)->refs++;
    pthread_mutex_unlock(&ov->lock);
    if (!name && *parent) {
        ov_put(ov, *parent);
        *parent = NULL;
    }
    return name;
}

void ov_set_upper(struct overlay *ov, struct ov_node *n, uint64_t upper)
{
    pthread_mutex_lock(&ov->lock);
    unlink_key(ov, n);
    n->upper = upper;
    link_key(ov, n);
    pthread_mutex_unlock(&ov->lock);
}

/* Sets N's parent and name; the old parent's reference is returned for
 * the caller to put.  Called with the lock held. */
static struct ov_node *set_place(struct ov_node *n, struct ov_node *parent, char *name)
{
    struct ov_node *old = n->parent;
    free(n->name);
    n->name = name;
    n->parent = parent;
    parent->refs++;
    return old;
}

int ov_move(struct overlay *ov, struct ov_node *n, struct ov_node *parent, const char *name)
{
    char *copy = strdup(name);
    if (!copy)
        return -ENOMEM;
    pthread_mutex_lock(&ov->lock);
    struct ov_node *old = set_place(n, parent, copy);
    pthread_mutex_unlock(&ov->lock);
    if (old)
        ov_put(ov, old);
    return 0;
}

void ov_found_drop(struct overlay *ov, struct ov_found *f)
{
    if (f->have_upper)
        ov->upper->ops->forget(ov->upper, f->upper.nodeid, 1);
    if (f->have_lower)
        ov->lower->ops->forget(ov->lower, f->lower.nodeid, 1);
    f->have_upper = f->have_lower = false;
}

static ino_t ino_for(const struct overlay *ov, const struct ov_found *f)
{
    if (f->have_lower)
        return f->lower.attr.st_ino;
    if (f->origin_ino)
        return f->origin_ino;
    return ov_upper_ino(ov, f->upper.attr.st_ino);
}

static struct ov_node *node_new(const struct overlay *ov, const struct ov_found *f,
                                const char *name)
{
    struct ov_node *n = calloc(1, sizeof(*n));
    if (!n || !(n->name = strdup(name)))
        return free(n), NULL;
    n->upper = f->have_upper ? f->upper.nodeid : 0;
    n->lower = f->have_lower ? f->lower.nodeid : 0;
    const struct stat *top = f->have_upper ? &f->upper.attr : &f->lower.attr;
    n->type = top->st_mode & S_IFMT;
    n->ino = ino_for(ov, f);
    return n;
}

/* Links the new node N under PARENT unless a racing lookup made one for
 * the same key (then that one is counted and returned).  Lock held. */
static struct ov_node *link_new_locked(struct overlay *ov, struct ov_node *n,
                                       struct ov_node *parent)
{
    struct ov_node *raced = find_key(ov, key_of(n));
    if (raced) {
        raced->nlookup++;
        return raced;
    }
    n->nodeid = ov->next_nodeid++;
    n->nlookup = 1;
    n->parent = parent;
    parent->refs++;
    link_id(ov, n);
    link_key(ov, n);
    if (++ov->count > ov->nbuckets * 2)
        grow_maps(ov);
    return n;
}

/* An existing node reached again: counted, and (for another hard link of
 * the same file) moved to the name it was reached by now, the one a
 * copy-up of it will use.  Lock held; returns the old parent to put. */
static struct ov_node *reuse_locked(struct ov_node *n, struct ov_node *parent, const char *name,
                                    char **spare)
{
    n->nlookup++;
    if (n->parent == parent && strcmp(n->name, name) == 0)
        return NULL;
    if (!*spare)
        return NULL;
    struct ov_node *old = set_place(n, parent, *spare);
    *spare = NULL;
    return old;
}

static void fill_entry(const struct ov_node *n, const struct ov_found *f, struct fsb_entry *out)
{
    out->attr = f->have_upper ? f->upper.attr : f->lower.attr;
    out->attr.st_ino = n->ino;
    out->nodeid = n->nodeid;
    out->generation = 0;
}

int ov_node_from(struct overlay *ov, struct ov_node *parent, const char *name,
                 struct ov_found *f, struct fsb_entry *out, struct ov_node **node)
{
    uint64_t key = f->have_upper ? (f->upper.nodeid | UPPER_KEY_BIT) : f->lower.nodeid;
    char *spare = strdup(name);
    pthread_mutex_lock(&ov->lock);
    struct ov_node *n = find_key(ov, key), *old_parent = NULL;
    bool full = !n && ov->count >= ov->max_nodes;
    if (n) {
        old_parent = reuse_locked(n, parent, name, &spare);
        if (node)
            n->refs++;
        fill_entry(n, f, out);
    }
    pthread_mutex_unlock(&ov->lock);
    free(spare);
    if (old_parent)
        ov_put(ov, old_parent);
    if (n || full) {
        ov_found_drop(ov, f); /* the node holds its own layer lookups */
        if (node)
            *node = n;
        return full ? -ENFILE : 0;
    }
    struct ov_node *fresh = node_new(ov, f, name);
    if (!fresh) {
        ov_found_drop(ov, f);
        return -ENOMEM;
    }
    pthread_mutex_lock(&ov->lock);
    n = link_new_locked(ov, fresh, parent);
    if (node)
        n->refs++;
    fill_entry(n, f, out);
    pthread_mutex_unlock(&ov->lock);
    if (n != fresh) {
        node_free(fresh);
        ov_found_drop(ov, f);
    }
    f->have_upper = f->have_lower = false; /* the node holds them now */
    if (node)
        *node = n;
    return 0;
}
