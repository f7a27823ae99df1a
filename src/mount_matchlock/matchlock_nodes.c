/*
 * matchlock_nodes.c - see matchlock_nodes.h.
 *
 * One mutex guards the whole table: every operation is a hash lookup and
 * a few pointer changes, far cheaper than the round trip to the host that
 * comes with it.  Two hash tables: names by (parent, name), and attached
 * non-directory nodes by host inode number (to find the node of another
 * link).  A node counts its lookups and the names below it, and is freed
 * with its names when both are zero, which may free a parent in turn.
 */
#include "mount_matchlock/matchlock_nodes.h"

#include "matchlock/ml_codec.h"

#include <errno.h>
#include <limits.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct ml_node;

/* One name of a node. */
struct ml_name {
    struct ml_node *parent;
    char *name;
    struct ml_node *node;
    struct ml_name *hash_next;  /* in the names table */
    struct ml_name *alias_next; /* the node's other names */
};

struct ml_node {
    struct ml_name *names;      /* the first one makes the path; NULL: detached */
    struct ml_node *ino_next;   /* in the inode table */
    bool in_ino_table;
    /* Detached nodes are on a list: only the kernel knows their ids, and
     * it need not forget them all before the process exits. */
    struct ml_node *detached_prev, *detached_next;
    uint64_t nlookup;
    unsigned children;          /* names whose parent is this node */
    struct stat attr;
};

/* A chained hash table of items that carry their own chain pointer. */
struct chain_table {
    void **buckets;
    size_t nbuckets;            /* a power of two */
    size_t count;
    size_t next_offset;         /* of the item's chain pointer */
    size_t (*hash)(const void *item);
};

struct ml_nodes {
    pthread_mutex_t lock;
    struct ml_node root;
    struct ml_node *detached;   /* list of detached nodes the kernel holds */
    struct chain_table names;
    struct chain_table inos;
    char prefix[];              /* "" for "/": paths are "/name..." */
};

#define INITIAL_BUCKETS 1024u

/* ----------------------------------------------------------------------
 * Hash tables
 */

static void **chain_next(const struct chain_table *t, void *item)
{
    return (void **)((char *)item + t->next_offset);
}

static int table_init(struct chain_table *t, size_t next_offset, size_t (*hash)(const void *))
{
    t->buckets = calloc(INITIAL_BUCKETS, sizeof(*t->buckets));
    t->nbuckets = INITIAL_BUCKETS;
    t->next_offset = next_offset;
    t->hash = hash;
    return t->buckets ? 0 : -ENOMEM;
}

static void **table_bucket(const struct chain_table *t, size_t hash)
{
    return &t->buckets[hash & (t->nbuckets - 1)];
}

/* Doubles the table; on allocation failure it just stays as it is. */
static void table_grow(struct chain_table *t)
{
    struct chain_table bigger = *t;
    bigger.nbuckets = t->nbuckets * 2;
    bigger.buckets = calloc(bigger.nbuckets, sizeof(*bigger.buckets));
    if (!bigger.buckets)
        return;
    for (size_t i = 0; i < t->nbuckets; i++) {
        for (void *item = t->buckets[i], *next; item; item = next) {
            next = *chain_next(t, item);
            void **b = table_bucket(&bigger, t->hash(item));
            *chain_next(t, item) = *b;
            *b = item;
        }
    }
    free(t->buckets);
    *t = bigger;
}

static void table_insert(struct chain_table *t, void *item)
{
    if (t->count >= t->nbuckets)
        table_grow(t);
    void **b = table_bucket(t, t->hash(item));
    *chain_next(t, item) = *b;
    *b = item;
    t->count++;
}

static void table_remove(struct chain_table *t, void *item)
{
    for (void **p = table_bucket(t, t->hash(item)); *p; p = chain_next(t, *p)) {
        if (*p == item) {
            *p = *chain_next(t, item);
            t->count--;
            return;
        }
    }
}

static size_t name_hash(const struct ml_node *parent, const char *name)
{
    uint64_t h = 0xcbf29ce484222325u ^ (uint64_t)(uintptr_t)parent;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 0x100000001b3u;
    return (size_t)(h ^ (h >> 32));
}

static size_t name_item_hash(const void *item)
{
    const struct ml_name *d = item;
    return name_hash(d->parent, d->name);
}

static size_t ino_hash(uint64_t ino)
{
    return (size_t)(ino ^ (ino >> 32));
}

static size_t ino_item_hash(const void *item)
{
    return ino_hash(((const struct ml_node *)item)->attr.st_ino);
}

static struct ml_name *find_name(struct ml_nodes *t, const struct ml_node *parent,
                                 const char *name)
{
    struct ml_name *d = *table_bucket(&t->names, name_hash(parent, name));
    while (d && (d->parent != parent || strcmp(d->name, name) != 0))
        d = d->hash_next;
    return d;
}

static struct ml_node *find_ino(struct ml_nodes *t, uint64_t ino)
{
    struct ml_node *n = *table_bucket(&t->inos, ino_hash(ino));
    while (n && (uint64_t)n->attr.st_ino != ino)
        n = n->ino_next;
    return n;
}

/* ----------------------------------------------------------------------
 * Nodes and names
 */

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
    if (table_init(&t->names, offsetof(struct ml_name, hash_next), name_item_hash) < 0 ||
        table_init(&t->inos, offsetof(struct ml_node, ino_next), ino_item_hash) < 0) {
        free(t->names.buckets);
        free(t);
        return NULL;
    }
    pthread_mutex_init(&t->lock, NULL);
    strcpy(t->prefix, base);
    t->root.nlookup = 1; /* the kernel never forgets the root */
    return t;
}

void ml_nodes_free(struct ml_nodes *t)
{
    if (!t)
        return;
    pthread_mutex_destroy(&t->lock);
    free(t->names.buckets);
    free(t->inos.buckets);
    free(t);
}

/* Directories are never found by inode number: one name each. */
static void index_node(struct ml_nodes *t, struct ml_node *n)
{
    if (!n->in_ino_table && n->names && !S_ISDIR(n->attr.st_mode)) {
        table_insert(&t->inos, n);
        n->in_ino_table = true;
    }
}

static void unindex_node(struct ml_nodes *t, struct ml_node *n)
{
    if (n->in_ino_table) {
        table_remove(&t->inos, n);
        n->in_ino_table = false;
    }
}

static struct ml_name *add_name(struct ml_nodes *t, struct ml_node *n, struct ml_node *parent,
                                const char *name)
{
    struct ml_name *d = calloc(1, sizeof(*d));
    if (!d || !(d->name = strdup(name))) {
        free(d);
        return NULL;
    }
    d->parent = parent;
    d->node = n;
    struct ml_name **tail = &n->names;
    while (*tail)
        tail = &(*tail)->alias_next;
    *tail = d; /* after the others: the first name, and so the path, stays */
    parent->children++;
    table_insert(&t->names, d);
    return d;
}

static void list_detached(struct ml_nodes *t, struct ml_node *n)
{
    n->detached_prev = NULL;
    n->detached_next = t->detached;
    if (t->detached)
        t->detached->detached_prev = n;
    t->detached = n;
}

static void unlist_detached(struct ml_nodes *t, struct ml_node *n)
{
    if (n->detached_prev)
        n->detached_prev->detached_next = n->detached_next;
    else if (t->detached == n)
        t->detached = n->detached_next;
    if (n->detached_next)
        n->detached_next->detached_prev = n->detached_prev;
}

/* Frees N and its names if nothing holds it any more, then their parents
 * likewise. */
static void release_unused(struct ml_nodes *t, struct ml_node *n)
{
    if (n == &t->root || n->nlookup > 0 || n->children > 0)
        return;
    unindex_node(t, n);
    if (!n->names)
        unlist_detached(t, n);
    struct ml_name *d = n->names;
    while (d) {
        struct ml_name *next = d->alias_next;
        struct ml_node *parent = d->parent;
        table_remove(&t->names, d);
        free(d->name);
        free(d);
        parent->children--;
        release_unused(t, parent);
        d = next;
    }
    free(n);
}

/* The host no longer has name D: drop it; its node may be detached. */
static void drop_name(struct ml_nodes *t, struct ml_name *d)
{
    struct ml_node *n = d->node, *parent = d->parent;
    struct ml_name **p = &n->names;
    while (*p != d)
        p = &(*p)->alias_next;
    *p = d->alias_next;
    table_remove(&t->names, d);
    free(d->name);
    free(d);
    if (!n->names) {
        unindex_node(t, n);
        list_detached(t, n);
    }
    parent->children--;
    release_unused(t, parent);
    release_unused(t, n);
}

ml_ino_t ml_nodes_remember(struct ml_nodes *t, ml_ino_t parent_id, const char *name,
                           const struct stat *attr)
{
    pthread_mutex_lock(&t->lock);
    struct ml_node *parent = node_of(t, parent_id);
    struct ml_name *d = find_name(t, parent, name);
    if (d && d->node->attr.st_ino != attr->st_ino) {
        drop_name(t, d); /* replaced on the host: a new file now */
        d = NULL;
    }
    struct ml_node *n = d ? d->node : NULL;
    if (!n && !S_ISDIR(attr->st_mode) && attr->st_nlink > 1)
        n = find_ino(t, attr->st_ino);
    bool fresh = !n;
    if (fresh)
        n = calloc(1, sizeof(*n));
    if (n && !d && !add_name(t, n, parent, name)) {
        if (fresh)
            free(n);
        n = NULL;
    }
    ml_ino_t id = 0;
    if (n) {
        n->nlookup++;
        if (n->in_ino_table && n->attr.st_ino != attr->st_ino)
            unindex_node(t, n); /* keyed by the inode number about to change */
        n->attr = *attr;
        index_node(t, n);
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
    struct ml_name *d = find_name(t, node_of(t, dir), name);
    if (d)
        drop_name(t, d);
    pthread_mutex_unlock(&t->lock);
}

void ml_nodes_moved(struct ml_nodes *t, ml_ino_t olddir, const char *oldname, ml_ino_t newdir,
                    const char *newname)
{
    pthread_mutex_lock(&t->lock);
    struct ml_node *to = node_of(t, newdir);
    struct ml_name *d = find_name(t, node_of(t, olddir), oldname);
    struct ml_name *replaced = find_name(t, to, newname);
    if (replaced && replaced != d)
        drop_name(t, replaced);
    char *copy = d && replaced != d ? strdup(newname) : NULL;
    if (copy) {
        struct ml_node *from = d->parent;
        table_remove(&t->names, d);
        free(d->name);
        d->name = copy;
        d->parent = to;
        to->children++;
        table_insert(&t->names, d);
        from->children--;
        release_unused(t, from);
    } else if (d && replaced != d) {
        drop_name(t, d); /* out of memory: forget where it went */
    }
    pthread_mutex_unlock(&t->lock);
}

/* ----------------------------------------------------------------------
 * Paths and kept attributes
 */

/* Deepest path below the prefix: every component takes at least two
 * bytes ("/x"; the first one's '/' is the prefix's). */
#define MAX_DEPTH ((ML_BELOW_PREFIX_MAX + 1) / 2)

/*
 * Writes the prefix, then "/" NAME for N's ancestors and N, then NAME.
 * The part below the prefix may be PATH_MAX - 1 bytes long, as on a local
 * disk (the host's limit too, ml_codec.h): the prefix does not count.
 */
static int build_path(struct ml_nodes *t, struct ml_node *n, const char *name, char *buf,
                      size_t size)
{
    const char *parts[MAX_DEPTH + 1];
    size_t depth = 0, below = 0, prefix_len = strlen(t->prefix);
    if (name)
        parts[depth++] = name;
    for (; n != &t->root; n = n->names->parent) {
        if (!n->names)
            return -ENOENT; /* detached */
        if (depth == MAX_DEPTH)
            return -ENAMETOOLONG;
        parts[depth++] = n->names->name;
    }
    for (size_t i = 0; i < depth; i++)
        below += 1 + strlen(parts[i]);
    if (below > 0 && below - 1 > ML_BELOW_PREFIX_MAX) /* "/a/b": "a/b" is below */
        return -ENAMETOOLONG;
    size_t len = prefix_len + below;
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
    struct ml_node *n = node_of(t, ino);
    if (n->in_ino_table && n->attr.st_ino != attr->st_ino)
        unindex_node(t, n);
    n->attr = *attr;
    index_node(t, n);
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
    bool detached = n != &t->root && !n->names;
    if (detached) {
        *attr = n->attr;
        attr->st_nlink = 0;
    }
    pthread_mutex_unlock(&t->lock);
    return detached;
}
