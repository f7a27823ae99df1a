/*
 * inode_table.c - see inode_table.h.  Two chained hash tables (by node id
 * and by host identity) share one lock; nothing slow runs under it but the
 * opening of a directory fd for a newly seen filesystem (mount_fd_for).
 */
#include "backend/passthrough/inode_table.h"
#include "backend/backend.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static size_t hash_u64(uint64_t v)
{
    v ^= v >> 33;
    v *= 0xff51afd7ed558ccdULL;
    v ^= v >> 33;
    return (size_t)v;
}

static size_t id_bucket(const struct inode_table *t, uint64_t nodeid)
{
    return hash_u64(nodeid) & (t->nbuckets - 1);
}

static size_t ino_bucket(const struct inode_table *t, dev_t dev, ino_t ino)
{
    return hash_u64((uint64_t)ino * 31 + (uint64_t)dev) & (t->nbuckets - 1);
}

static void table_link(struct inode_table *t, struct pt_inode *in)
{
    size_t b = id_bucket(t, in->nodeid);
    in->next_by_id = t->by_id[b];
    t->by_id[b] = in;
    if (in->stale)
        return;
    b = ino_bucket(t, in->dev, in->ino);
    in->next_by_ino = t->by_ino[b];
    t->by_ino[b] = in;
}

static void unlink_by_ino(struct inode_table *t, struct pt_inode *in)
{
    struct pt_inode **p = &t->by_ino[ino_bucket(t, in->dev, in->ino)];
    while (*p != in)
        p = &(*p)->next_by_ino;
    *p = in->next_by_ino;
}

static void table_unlink(struct inode_table *t, struct pt_inode *in)
{
    struct pt_inode **p = &t->by_id[id_bucket(t, in->nodeid)];
    while (*p != in)
        p = &(*p)->next_by_id;
    *p = in->next_by_id;
    if (!in->stale)
        unlink_by_ino(t, in);
}

/* Doubles the bucket arrays; on allocation failure the table just stays
 * denser. */
static void table_grow(struct inode_table *t)
{
    size_t n = t->nbuckets * 2;
    struct pt_inode **by_id = calloc(n, sizeof(*by_id));
    struct pt_inode **by_ino = calloc(n, sizeof(*by_ino));
    if (!by_id || !by_ino) {
        free(by_id);
        free(by_ino);
        return;
    }
    struct pt_inode **old = t->by_id;
    size_t old_n = t->nbuckets;
    free(t->by_ino);
    t->by_id = by_id;
    t->by_ino = by_ino;
    t->nbuckets = n;
    for (size_t i = 0; i < old_n; i++) {
        for (struct pt_inode *in = old[i], *next; in; in = next) {
            next = in->next_by_id;
            table_link(t, in);
        }
    }
    free(old);
}

static struct pt_inode *find_by_id(struct inode_table *t, uint64_t nodeid)
{
    struct pt_inode *in = t->by_id[id_bucket(t, nodeid)];
    while (in && in->nodeid != nodeid)
        in = in->next_by_id;
    return in;
}

static struct pt_inode *find_by_ino(struct inode_table *t, dev_t dev, ino_t ino)
{
    struct pt_inode *in = t->by_ino[ino_bucket(t, dev, ino)];
    while (in && (in->ino != ino || in->dev != dev))
        in = in->next_by_ino;
    return in;
}

static void inode_free(struct pt_inode *in)
{
    fd_cache_entry_destroy(&in->fdc);
    free(in->handle);
    free(in);
}

/* The fd that open_by_handle_at needs for inodes on device DEV: a
 * directory of that filesystem, opened for reading (the kernel refuses
 * O_PATH fds there), kept open.  The first inode seen on a filesystem is
 * normally its mount point; -1 when it is not a directory or the table is
 * full, and the inode then keeps a permanent fd instead of a handle. */
static int mount_fd_for(struct inode_table *t, dev_t dev, int fd, mode_t type)
{
    for (unsigned i = 0; i < t->nmounts; i++)
        if (t->mounts[i].dev == dev)
            return t->mounts[i].fd;
    if (t->nmounts == PT_MAX_MOUNTS || !S_ISDIR(type))
        return -1;
    int dirfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0)
        return -1;
    t->mounts[t->nmounts].dev = dev;
    t->mounts[t->nmounts].fd = dirfd;
    t->nmounts++;
    return dirfd;
}

/* A file handle for FD, or NULL when the filesystem has none. */
static struct file_handle *handle_of(int fd)
{
    struct file_handle *h = malloc(sizeof(*h) + MAX_HANDLE_SZ);
    int mount_id;
    if (!h)
        return NULL;
    h->handle_bytes = MAX_HANDLE_SZ;
    if (name_to_handle_at(fd, "", h, &mount_id, AT_EMPTY_PATH) < 0) {
        free(h);
        return NULL;
    }
    return h;
}

/* A new entry, taking HANDLE (handle_of(FD), or NULL). */
static struct pt_inode *inode_new(struct inode_table *t, int fd, const struct stat *st,
                                  struct file_handle *handle)
{
    struct pt_inode *in = calloc(1, sizeof(*in));
    if (!in) {
        free(handle);
        return NULL;
    }
    in->dev = st->st_dev;
    in->ino = st->st_ino;
    in->type = st->st_mode & S_IFMT;
    in->mount_fd = -1;
    if (handle) {
        in->handle = handle;
        pthread_mutex_lock(&t->lock); /* the mounts array is shared */
        if (in->handle)
            in->mount_fd = mount_fd_for(t, st->st_dev, fd, st->st_mode);
        pthread_mutex_unlock(&t->lock);
        if (in->mount_fd < 0) {
            free(in->handle);
            in->handle = NULL;
        }
    }
    fd_cache_entry_init(&in->fdc, -1, in->handle == NULL);
    return in;
}

int inode_table_init(struct inode_table *t, int root_fd, size_t max_inodes, size_t max_permanent,
                     bool use_handles, bool keep_ghosts, struct fsb_guest *guest)
{
    struct stat st;
    memset(t, 0, sizeof(*t));
    if (fstat(root_fd, &st) < 0)
        return -errno;
    pthread_mutex_init(&t->lock, NULL);
    t->nbuckets = 1024;
    t->by_id = calloc(t->nbuckets, sizeof(*t->by_id));
    t->by_ino = calloc(t->nbuckets, sizeof(*t->by_ino));
    t->max_inodes = max_inodes;
    t->max_permanent = max_permanent;
    t->use_handles = use_handles;
    t->guest = guest;
    t->next_nodeid = FSB_ROOT_NODEID + 1;
    bool ghosts = use_handles && keep_ghosts;
    if (ghosts)
        t->ghosts = calloc(PT_GHOSTS, sizeof(*t->ghosts));
    if (!t->by_id || !t->by_ino || (ghosts && !t->ghosts))
        return -ENOMEM;
    /* The root keeps its fd for the session's lifetime: every path starts
     * there, and it must not depend on a reopen that could fail. */
    struct pt_inode *root = calloc(1, sizeof(*root));
    if (!root)
        return -ENOMEM;
    root->nodeid = FSB_ROOT_NODEID;
    root->dev = st.st_dev;
    root->ino = st.st_ino;
    root->type = S_IFDIR;
    root->nlookup = 1;
    root->mount_fd = -1;
    fd_cache_entry_init(&root->fdc, root_fd, true);
    table_link(t, root);
    t->count = 1;
    if (use_handles)
        mount_fd_for(t, st.st_dev, root_fd, S_IFDIR);
    return 0;
}

/* What an entry holds of its guest's budgets (the root holds nothing:
 * it is the session's, not the guest's doing). */
static int take_budget(struct inode_table *t, bool permanent)
{
    int err = fsb_guest_take(t->guest, FSB_BUDGET_INODES, 1);
    if (!err && permanent && (err = fsb_guest_take(t->guest, FSB_BUDGET_OPEN, 1)))
        fsb_guest_give(t->guest, FSB_BUDGET_INODES, 1);
    return err;
}

static void give_budget(struct inode_table *t, const struct pt_inode *in)
{
    fsb_guest_give(t->guest, FSB_BUDGET_INODES, 1);
    if (!in->handle)
        fsb_guest_give(t->guest, FSB_BUDGET_OPEN, 1);
}

void inode_table_destroy(struct inode_table *t)
{
    for (size_t i = 0; t->by_id && i < t->nbuckets; i++) {
        for (struct pt_inode *in = t->by_id[i], *next; in; in = next) {
            next = in->next_by_id;
            if (in->nodeid != FSB_ROOT_NODEID)
                give_budget(t, in);
            inode_free(in);
        }
    }
    for (unsigned i = 0; i < t->nmounts; i++)
        close(t->mounts[i].fd);
    for (size_t i = 0; t->ghosts && i < PT_GHOSTS; i++)
        free(t->ghosts[i].handle);
    free(t->ghosts);
    free(t->by_id);
    free(t->by_ino);
    pthread_mutex_destroy(&t->lock);
}

struct pt_inode *inode_get(struct inode_table *t, uint64_t nodeid)
{
    pthread_mutex_lock(&t->lock);
    struct pt_inode *in = find_by_id(t, nodeid);
    if (in)
        in->refs++;
    pthread_mutex_unlock(&t->lock);
    return in;
}

/* Puts GHOST into the ring, over the oldest ghost; the ring takes its
 * handle.  Called with the lock held. */
static void put_ghost(struct inode_table *t, const struct pt_ghost *ghost)
{
    struct pt_ghost *g = &t->ghosts[t->next_ghost++ % PT_GHOSTS];
    free(g->handle);
    *g = *ghost;
}

/* Moves the handle of the released entry IN into the ghost ring, over
 * the oldest ghost.  A stale entry's handle names a file that is gone.
 * Called with the lock held. */
static void keep_ghost(struct inode_table *t, struct pt_inode *in)
{
    if (!t->ghosts || !in->handle || in->stale)
        return;
    put_ghost(t, &(struct pt_ghost){ .nodeid = in->nodeid, .mount_fd = in->mount_fd,
                                     .handle = in->handle });
    in->handle = NULL;
}

/* Takes the ghost of NODEID out of the ring; false if there is none.
 * Called with the lock held. */
static bool take_ghost(struct inode_table *t, uint64_t nodeid, struct pt_ghost *out)
{
    for (size_t i = 0; t->ghosts && i < PT_GHOSTS; i++) {
        struct pt_ghost *g = &t->ghosts[i];
        if (g->nodeid == nodeid && g->handle) {
            *out = *g;
            memset(g, 0, sizeof(*g));
            return true;
        }
    }
    return false;
}

/* Unlinks IN if nothing refers to it any more; returns true if the caller
 * must free it (after dropping the lock).  Called with the lock held. */
static bool release_if_unused(struct inode_table *t, struct pt_inode *in)
{
    if (in->nlookup || in->refs || in->nodeid == FSB_ROOT_NODEID)
        return false;
    table_unlink(t, in);
    t->count--;
    t->permanent -= !in->handle;
    give_budget(t, in);
    keep_ghost(t, in);
    return true;
}

void inode_put(struct inode_table *t, struct pt_inode *in)
{
    pthread_mutex_lock(&t->lock);
    in->refs--;
    bool dead = release_if_unused(t, in);
    pthread_mutex_unlock(&t->lock);
    if (dead)
        inode_free(in);
}

/* Gives FD to IN's cache entry, or closes it if IN has one.  Called with
 * the table lock held (the cache lock nests inside it, never around). */
static void offer_or_close(struct pt_inode *in, int fd)
{
    if (!fd_cache_offer(&in->fdc, fd))
        close(fd);
}

/* Whether IN is still the host inode whose handle is H: an inode number
 * is reused once its file is deleted and no fd holds it, and a guest may
 * still know the old one.  Without handles there is nothing to compare
 * (an entry without a handle keeps a permanent fd, so its number cannot
 * be reused). */
static bool same_inode(const struct pt_inode *in, const struct file_handle *h)
{
    return !in->handle || !h ||
           (in->handle->handle_type == h->handle_type &&
            in->handle->handle_bytes == h->handle_bytes &&
            memcmp(in->handle->f_handle, h->f_handle, h->handle_bytes) == 0);
}

/* The entry for (ST's dev, ino) if it is the inode of handle H; an entry
 * of a reused number is set aside (stale).  Called with the lock held. */
static struct pt_inode *find_current(struct inode_table *t, const struct stat *st,
                                     const struct file_handle *h)
{
    struct pt_inode *in = find_by_ino(t, st->st_dev, st->st_ino);
    if (in && !same_inode(in, h)) {
        unlink_by_ino(t, in);
        in->stale = true;
        in = NULL;
    }
    return in;
}

/* Whether the new entry IN may join the table: not one permanent fd too
 * many, and within its guest's budgets.  Called with the lock held. */
static int admit_locked(struct inode_table *t, const struct pt_inode *in)
{
    if (!in->handle && t->permanent >= t->max_permanent)
        return -ENFILE;
    return take_budget(t, !in->handle);
}

/* Links the admitted entry IN as NODEID with one lookup, and gives it FD.
 * Called with the lock held. */
static void link_as_locked(struct inode_table *t, struct pt_inode *in, uint64_t nodeid, int fd)
{
    in->nodeid = nodeid;
    in->nlookup = 1;
    /* Numbered before it can be found, so that a reader of the count who
     * finds it knows whether it was there before his read. */
    in->linked_at = atomic_load_explicit(&t->links, memory_order_relaxed) + 1;
    atomic_store_explicit(&t->links, in->linked_at, memory_order_seq_cst);
    t->permanent += !in->handle;
    table_link(t, in);
    if (++t->count > t->nbuckets * 2)
        table_grow(t);
    offer_or_close(in, fd);
}

/* Adds the new entry IN for FD, unless a lookup of the same inode won the
 * race meanwhile, or admit_locked refuses it.  Called with the lock held;
 * takes IN and FD. */
static int64_t link_new_locked(struct inode_table *t, struct pt_inode *in, const struct stat *st,
                               int fd)
{
    struct pt_inode *raced = find_current(t, st, in->handle);
    int err = raced ? 0 : admit_locked(t, in);
    if (raced || err) {
        inode_free(in);
        close(fd);
        if (!raced)
            return err;
        raced->nlookup++; /* the other lookup won: count ours on theirs */
        return (int64_t)raced->nodeid;
    }
    uint64_t id = t->next_nodeid++;
    link_as_locked(t, in, id, fd);
    return (int64_t)id;
}

uint64_t inode_table_links(struct inode_table *t)
{
    return atomic_load_explicit(&t->links, memory_order_seq_cst);
}

int64_t inode_remember(struct inode_table *t, int fd, const struct stat *st, uint64_t since,
                       bool *settled)
{
    struct file_handle *h = t->use_handles ? handle_of(fd) : NULL;
    pthread_mutex_lock(&t->lock);
    struct pt_inode *in = find_current(t, st, h);
    if (settled)
        *settled = in && in->linked_at <= since;
    if (in) {
        free(h);
        in->nlookup++;
        uint64_t id = in->nodeid;
        /* Offered under the table lock: a FORGET running on another
         * thread could free IN as soon as the lock is dropped (the
         * guest may forget counts it has not been given yet). */
        offer_or_close(in, fd);
        pthread_mutex_unlock(&t->lock);
        return (int64_t)id;
    }
    bool full = t->count >= t->max_inodes;
    pthread_mutex_unlock(&t->lock);
    if (full) {
        free(h);
        close(fd);
        return -ENFILE;
    }
    in = inode_new(t, fd, st, h);
    if (!in) {
        close(fd);
        return -ENOMEM;
    }
    pthread_mutex_lock(&t->lock);
    int64_t id = link_new_locked(t, in, st, fd);
    pthread_mutex_unlock(&t->lock);
    return id;
}

/* Links IN (for FD) again as the node NODEID it was, unless its inode has
 * been looked up under a new id since: the guest's handle then names a node
 * that is gone, as on a local filesystem whose inode was evicted and
 * reloaded under another generation.  Called with the lock held; takes IN
 * and FD. */
static int64_t relink_locked(struct inode_table *t, struct pt_inode *in, const struct stat *st,
                             int fd, uint64_t nodeid)
{
    int err = find_current(t, st, in->handle) ? -ESTALE : admit_locked(t, in);
    if (err) {
        inode_free(in);
        close(fd);
        return err;
    }
    link_as_locked(t, in, nodeid, fd);
    return (int64_t)nodeid;
}

/* Running out of fds or memory says nothing about the file: the ghost
 * must survive it, so that the guest's handle works once there is room. */
static bool is_shortage(int err)
{
    return err == EMFILE || err == ENFILE || err == ENOMEM;
}

/* An O_PATH fd of the ghost G's file, and its stat; -ESTALE when the file
 * is gone (whatever the host's own errno says), also when it is deleted
 * but still held open on the host (the live path's rule, lookup_dot);
 * -EMFILE, -ENFILE, -ENOMEM as they come. */
static int reopen_ghost(const struct pt_ghost *g, struct stat *st)
{
    int fd;
    FD_RETRY_EMFILE(fd, open_by_handle_at(g->mount_fd, g->handle, O_PATH | O_CLOEXEC));
    if (fd < 0)
        return is_shortage(errno) ? -errno : -ESTALE;
    int err = 0;
    if (fstatat(fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
        err = is_shortage(errno) ? -errno : -ESTALE;
    else if (st->st_nlink == 0)
        err = -ESTALE;
    if (err) {
        close(fd);
        return err;
    }
    return fd;
}

/* Gives the ghost G back to the ring after a shortage, or lets it go. */
static void end_revive(struct inode_table *t, struct pt_ghost *g, int err)
{
    if (!is_shortage(-err)) {
        free(g->handle);
        return;
    }
    pthread_mutex_lock(&t->lock);
    put_ghost(t, g);
    pthread_mutex_unlock(&t->lock);
}

int64_t inode_revive(struct inode_table *t, uint64_t nodeid, struct stat *st)
{
    struct pt_ghost g;
    pthread_mutex_lock(&t->lock);
    bool full = t->count >= t->max_inodes;
    bool found = !full && take_ghost(t, nodeid, &g);
    pthread_mutex_unlock(&t->lock);
    if (!found)
        return full ? -ENFILE : -ESTALE;
    int fd = reopen_ghost(&g, st);
    if (fd < 0) {
        end_revive(t, &g, fd);
        return fd;
    }
    struct pt_inode *in = inode_new(t, fd, st, g.handle);
    if (!in) {          /* inode_new freed the handle: this ghost is lost */
        close(fd);
        return -ENOMEM;
    }
    pthread_mutex_lock(&t->lock);
    int64_t id = relink_locked(t, in, st, fd, nodeid);
    pthread_mutex_unlock(&t->lock);
    return id;
}

bool inode_is_known(struct inode_table *t, dev_t dev, ino_t ino)
{
    pthread_mutex_lock(&t->lock);
    bool known = find_by_ino(t, dev, ino) != NULL;
    pthread_mutex_unlock(&t->lock);
    return known;
}

bool inode_forget(struct inode_table *t, uint64_t nodeid, uint64_t n)
{
    pthread_mutex_lock(&t->lock);
    struct pt_inode *in = find_by_id(t, nodeid);
    bool dead = false, unknown = !in;
    if (in && in->nodeid != FSB_ROOT_NODEID) {
        in->nlookup = n > in->nlookup ? 0 : in->nlookup - n;
        unknown = in->nlookup == 0;
        dead = release_if_unused(t, in);
    }
    pthread_mutex_unlock(&t->lock);
    if (dead)
        inode_free(in);
    return unknown;
}

static int reopen_by_handle(void *arg)
{
    struct pt_inode *in = arg;
    int fd;
    FD_RETRY_EMFILE(fd, open_by_handle_at(in->mount_fd, in->handle, O_PATH | O_CLOEXEC));
    return fd < 0 ? -errno : fd;
}

int inode_pin(struct pt_inode *in)
{
    /* Without a handle the fd is permanent: there is nothing to reopen. */
    if (!in->handle)
        return fd_cache_pin(&in->fdc, NULL, NULL);
    return fd_cache_pin(&in->fdc, reopen_by_handle, in);
}

void inode_unpin(struct pt_inode *in)
{
    fd_cache_unpin(&in->fdc);
}

uint64_t inode_nodeid_of(struct inode_table *t, dev_t dev, ino_t ino)
{
    pthread_mutex_lock(&t->lock);
    struct pt_inode *in = find_by_ino(t, dev, ino);
    uint64_t id = in ? in->nodeid : 0;
    pthread_mutex_unlock(&t->lock);
    return id;
}

size_t inode_table_nodeids(struct inode_table *t, uint64_t **out)
{
    pthread_mutex_lock(&t->lock);
    size_t n = 0;
    uint64_t *ids = malloc((t->count + 1) * sizeof(*ids));
    for (size_t b = 0; ids && b < t->nbuckets; b++)
        for (struct pt_inode *in = t->by_id[b]; in; in = in->next_by_id)
            ids[n++] = in->nodeid;
    pthread_mutex_unlock(&t->lock);
    *out = ids;
    return n;
}
