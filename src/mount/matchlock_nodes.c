/*
 * matchlock_nodes.c - see matchlock_nodes.h.
 *
 * One mutex guards the whole table: every operation is a hash lookup and
 * a few pointer changes, far cheaper than the round trip to the host that
 * comes with it.  Attached nodes sit in a hash table keyed by (parent,
 * name); a node counts its lookups and the nodes below it, and is freed
 * when both are zero (which may free its parent in turn).
 */
#include "mount/matchlock_nodes.h"

#include <errno.h>
#include <limits.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct ml_node {
    struct ml_node *parent;    /* NULL for the root and detached nodes */
    char *name;
    struct ml_node *hash_next;
    uint64_t nlookup;
    unsigned children;         /* attached or detached nodes with parent == this */
    bool detached;
    struct stat attr;
};

struct ml_nodes {
    pthread_mutex_t lock;
    struct ml_node root;
    struct ml_node **buckets;
    size_t nbuckets;           /* a power of two */
    size_t count;
    char prefix[];             /* "" for "/": paths are "/name..." */
};

#define INITIAL_BUCKETS 1024u

static struct ml_node *node_of(struct ml_nodes *t, ml_ino_t ino)
{
    return ino == FUSE_ROOT_ID ? &t->root : (struct ml_node *)(uintptr_t)ino;
}

static ml_ino_t id_of(struct ml_nodes *t, struct ml_node *n)
{
    return n == &t->root ? FUSE_ROOT_ID : (ml_ino_t)(uintptr_t)n;
}

struct ml_nodes *ml_nodes_new(const char *prefix)
{
    const char *base = strcmp(prefix, "/") == 0 ? "" : prefix;
    struct ml_nodes *t = calloc(1, sizeof(*t) + strlen(base) + 1);
    if (!t)
        return NULL;
    t->nbuckets = INITIAL_BUCKETS;
    t->buckets = calloc(t->nbuckets, sizeof(*t->buckets));
    if (!t->buckets) {
        free(t);
        return NULL;
    }
    pthread_mutex_init(&t->lock, NULL);
    strcpy(t->prefix, base);
    t->root.nlookup = 1; /* the kernel never forgets the root */
    return t;
}

/* ----------------------------------------------------------------------
 * The hash table of attached nodes
 */

static size_t hash_of(const struct ml_node *parent, const char *name)
{
    uint64_t h = 0xcbf29ce484222325u ^ (uint64_t)(uintptr_t)parent;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 0x100000001b3u;
    return (size_t)(h ^ (h >> 32));
}

static struct ml_node **slot_of(struct ml_nodes *t, const struct ml_node *parent,
                                const char *name)
{
    struct ml_node **p = &t->buckets[hash_of(parent, name) & (t->nbuckets - 1)];
    while (*p && ((*p)->parent != parent || strcmp((*p)->name, name) != 0))
        p = &(*p)->hash_next;
    return p;
}

static struct ml_node *find(struct ml_nodes *t, struct ml_node *parent, const char *name)
{
    return *slot_of(t, parent, name);
}

/* Doubles the table; on allocation failure it just stays as it is. */
static void rehash(struct ml_nodes *t)
{
    size_t n = t->nbuckets * 2;
    struct ml_node **b = calloc(n, sizeof(*b));
    if (!b)
        return;
    for (size_t i = 0; i < t->nbuckets; i++) {
        for (struct ml_node *node = t->buckets[i], *next; node; node = next) {
            next = node->hash_next;
            size_t h = hash_of(node->parent, node->name) & (n - 1);
            node->hash_next = b[h];
            b[h] = node;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = n;
}

static void hash_insert(struct ml_nodes *t, struct ml_node *n)
{
    if (t->count >= t->nbuckets)
        rehash(t);
    struct ml_node **slot = &t->buckets[hash_of(n->parent, n->name) & (t->nbuckets - 1)];
    n->hash_next = *slot;
    *slot = n;
    t->count++;
}

static void hash_remove(struct ml_nodes *t, struct ml_node *n)
{
    struct ml_node **p = slot_of(t, n->parent, n->name);
    if (*p == n) {
        *p = n->hash_next;
        t->count--;
    }
}

/* ----------------------------------------------------------------------
 * Lifetime
 */

/* Frees N if nothing holds it any more, then its parent likewise. */
static void release_unused(struct ml_nodes *t, struct ml_node *n)
{
    while (n && n != &t->root && n->nlookup == 0 && n->children == 0) {
        struct ml_node *parent = n->parent;
        if (!n->detached)
            hash_remove(t, n);
        free(n->name);
        free(n);
        if (parent)
            parent->children--;
        n = parent;
    }
}

static void detach(struct ml_nodes *t, struct ml_node *n)
{
    struct ml_node *parent = n->parent;
    hash_remove(t, n);
    n->parent = NULL;
    n->detached = true;
    parent->children--;
    release_unused(t, parent);
    release_unused(t, n);
}

ml_ino_t ml_nodes_remember(struct ml_nodes *t, ml_ino_t parent_id, const char *name,
                           const struct stat *attr)
{
    pthread_mutex_lock(&t->lock);
    struct ml_node *parent = node_of(t, parent_id);
    struct ml_node *n = find(t, parent, name);
    if (!n && (n = calloc(1, sizeof(*n))) && !(n->name = strdup(name))) {
        free(n);
        n = NULL;
    } else if (n && !n->parent) {
        n->parent = parent;
        parent->children++;
        hash_insert(t, n);
    }
    ml_ino_t id = 0;
    if (n) {
        n->nlookup++;
        n->attr = *attr;
        id = id_of(t, n);
    }
    pthread_mutex_unlock(&t->lock);
    return id;
}

void ml_nodes_forget(struct ml_nodes *t, ml_ino_t ino, uint64_t nlookup)
{
    pthread_mutex_lock(&t->lock);
    struct ml_node *n = node_of(t, ino);
    if (n != &t->root) {
        n->nlookup -= nlookup < n->nlookup ? nlookup : n->nlookup;
        release_unused(t, n);
    }
    pthread_mutex_unlock(&t->lock);
}

/* ----------------------------------------------------------------------
 * Renames and removals done on the host
 */

void ml_nodes_removed(struct ml_nodes *t, ml_ino_t dir, const char *name)
{
    pthread_mutex_lock(&t->lock);
    struct ml_node *n = find(t, node_of(t, dir), name);
    if (n)
        detach(t, n);
    pthread_mutex_unlock(&t->lock);
}

void ml_nodes_moved(struct ml_nodes *t, ml_ino_t olddir, const char *oldname, ml_ino_t newdir,
                    const char *newname)
{
    pthread_mutex_lock(&t->lock);
    struct ml_node *from = node_of(t, olddir), *to = node_of(t, newdir);
    struct ml_node *n = find(t, from, oldname);
    struct ml_node *replaced = find(t, to, newname);
    if (replaced && replaced != n)
        detach(t, replaced);
    char *copy = n && replaced != n ? strdup(newname) : NULL;
    if (copy) {
        hash_remove(t, n);
        to->children++;  /* before the old parent may go */
        from->children--;
        release_unused(t, from);
        free(n->name);
        n->name = copy;
        n->parent = to;
        hash_insert(t, n);
    } else if (n && replaced != n) {
        detach(t, n); /* out of memory: forget where it went */
    }
    pthread_mutex_unlock(&t->lock);
}

/* ----------------------------------------------------------------------
 * Paths and kept attributes
 */

/* Deepest path: every component takes at least two bytes ("/x"). */
#define MAX_DEPTH (PATH_MAX / 2)

/* Writes "/" NAME... of N's ancestors, then of N, after the prefix. */
static int build_path(struct ml_nodes *t, struct ml_node *n, const char *name, char *buf,
                      size_t size)
{
    const char *parts[MAX_DEPTH + 1];
    size_t depth = 0, len = strlen(t->prefix);
    if (name)
        parts[depth++] = name;
    for (; n != &t->root; n = n->parent) {
        if (n->detached || depth == MAX_DEPTH)
            return n->detached ? -ENOENT : -ENAMETOOLONG;
        parts[depth++] = n->name;
    }
    for (size_t i = 0; i < depth; i++)
        len += 1 + strlen(parts[i]);
    if (len + 1 > size || (len == 0 && size < 2))
        return -ENAMETOOLONG;
    char *p = stpcpy(buf, t->prefix);
    while (depth > 0) {
        *p++ = '/';
        p = stpcpy(p, parts[--depth]);
    }
    if (p == buf)
        strcpy(buf, "/");
    return 0;
}

int ml_nodes_path(struct ml_nodes *t, ml_ino_t ino, const char *name, char *buf, size_t size)
{
    pthread_mutex_lock(&t->lock);
    int err = build_path(t, node_of(t, ino), name, buf, size);
    pthread_mutex_unlock(&t->lock);
    return err;
}

void ml_nodes_set_attr(struct ml_nodes *t, ml_ino_t ino, const struct stat *attr)
{
    pthread_mutex_lock(&t->lock);
    node_of(t, ino)->attr = *attr;
    pthread_mutex_unlock(&t->lock);
}

void ml_nodes_resized(struct ml_nodes *t, ml_ino_t ino, off_t size, bool only_grow)
{
    pthread_mutex_lock(&t->lock);
    struct ml_node *n = node_of(t, ino);
    if (size > n->attr.st_size || !only_grow) {
        n->attr.st_size = size;
        n->attr.st_blocks = (size + 511) / 512;
    }
    pthread_mutex_unlock(&t->lock);
}

bool ml_nodes_detached_attr(struct ml_nodes *t, ml_ino_t ino, struct stat *attr)
{
    pthread_mutex_lock(&t->lock);
    struct ml_node *n = node_of(t, ino);
    bool detached = n->detached;
    if (detached) {
        *attr = n->attr;
        attr->st_nlink = 0;
    }
    pthread_mutex_unlock(&t->lock);
    return detached;
}
