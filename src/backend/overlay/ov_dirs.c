/*
 * ov_dirs.c - merged directories: the listing of UPPER's directory without
 * its whiteouts, then LOWER's entries that UPPER neither has nor whites
 * out (none when the directory is opaque: the node has no LOWER then).
 *
 * The listing is taken whole at OPENDIR (as fuse-overlayfs does), so that
 * READDIR offsets are plain indexes into one consistent list, and taken
 * again when the guest rewinds to offset 0.  Its memory is the directory's
 * names; the number of open directories per session is bounded like open
 * files.
 *
 * d_ino follows the st_ino rule of ov_nodes.c: an UPPER entry whose name
 * LOWER has with the same type is the copy of it and shows LOWER's number
 * (READDIRPLUS gives the looked-up one, which is exact).
 */
#include "backend/overlay/ov_internal.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct listing {
    struct ov_dirent *e;
    size_t count, cap;
};

static int push(struct listing *l, const char *name, ino_t ino, unsigned char type)
{
    if (l->count == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 32;
        struct ov_dirent *e = realloc(l->e, cap * sizeof(*e));
        if (!e)
            return -ENOMEM;
        l->e = e;
        l->cap = cap;
    }
    char *copy = strdup(name);
    if (!copy)
        return -ENOMEM;
    l->e[l->count++] = (struct ov_dirent){ .name = copy, .ino = ino, .type = type };
    return 0;
}

void ov_list_free(struct ov_dirent *e, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(e[i].name);
    free(e);
}

static bool dot_or_dotdot(const char *n)
{
    return n[0] == '.' && (n[1] == 0 || (n[1] == '.' && n[2] == 0));
}

/* Whether the entry D of directory DP is a whiteout. */
static bool entry_is_whiteout(DIR *dp, const struct dirent *d)
{
    struct stat st;
    if (d->d_type != DT_CHR && d->d_type != DT_UNKNOWN)
        return false;
    return fstatat(dirfd(dp), d->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && ov_is_whiteout(&st);
}

/* Reads the directory of layer node ID; whiteouts go to WHITEOUTS (type
 * DT_CHR) when it is given, else are skipped. */
static int read_layer(struct fsb_backend *be, uint64_t id, struct listing *out,
                      struct listing *whiteouts)
{
    mode_t type;
    void *pin;
    int fd = passthrough_pin(be, id, &type, &pin);
    if (fd < 0)
        return fd;
    int dfd = passthrough_reopen(fd, O_RDONLY | O_DIRECTORY);
    passthrough_unpin(be, pin);
    if (dfd < 0)
        return dfd;
    DIR *dp = fdopendir(dfd);
    if (!dp) {
        close(dfd);
        return -errno;
    }
    int err = 0;
    for (struct dirent *d; !err && (d = readdir(dp));) {
        if (dot_or_dotdot(d->d_name))
            continue;
        if (entry_is_whiteout(dp, d))
            err = whiteouts ? push(whiteouts, d->d_name, d->d_ino, DT_CHR) : 0;
        else
            err = push(out, d->d_name, d->d_ino, d->d_type);
    }
    closedir(dp);
    return err;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct ov_dirent *)a)->name, ((const struct ov_dirent *)b)->name);
}

/* NAME among the first N (sorted) entries of L. */
static struct ov_dirent *find_name(const struct listing *l, size_t n, const char *name)
{
    struct ov_dirent key = { .name = (char *)name };
    return n ? bsearch(&key, l->e, n, sizeof(key), by_name) : NULL;
}

/* Adds LOWER's entries that UPPER (sorted, with its whiteouts in WH,
 * sorted) neither has nor hides. */
static int merge_lower(struct listing *upper, struct listing *wh, struct listing *lower)
{
    size_t nupper = upper->count;
    int err = 0;
    for (size_t i = 0; i < lower->count && !err; i++) {
        struct ov_dirent *e = &lower->e[i];
        struct ov_dirent *u = find_name(upper, nupper, e->name);
        if (u) {
            if (u->type == e->type)
                u->ino = e->ino; /* the copy of e: LOWER's number */
        } else if (!find_name(wh, wh->count, e->name)) {
            err = push(upper, e->name, e->ino, e->type);
        }
    }
    return err;
}

static void map_upper_inos(const struct overlay *ov, struct listing *l)
{
    for (size_t i = 0; i < l->count; i++)
        l->e[i].ino = ov_upper_ino(ov, l->e[i].ino);
}

int ov_list(struct overlay *ov, uint64_t up, uint64_t low, struct ov_dirent **out,
            size_t *count)
{
    struct listing upper = { 0 }, wh = { 0 }, lower = { 0 };
    int err = up ? read_layer(ov->upper, up, &upper, &wh) : 0;
    if (!err && low)
        err = read_layer(ov->lower, low, &lower, NULL);
    if (!err) {
        map_upper_inos(ov, &upper);
        if (upper.count > 1)
            qsort(upper.e, upper.count, sizeof(*upper.e), by_name);
        if (wh.count > 1)
            qsort(wh.e, wh.count, sizeof(*wh.e), by_name);
        err = merge_lower(&upper, &wh, &lower);
    }
    ov_list_free(wh.e, wh.count);
    ov_list_free(lower.e, lower.count);
    if (err) {
        ov_list_free(upper.e, upper.count);
        return err;
    }
    *out = upper.e;
    *count = upper.count;
    return 0;
}

int ov_remove_tree(int parent, const char *name)
{
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOTDIR || errno == ELOOP
                   ? (unlinkat(parent, name, 0) < 0 ? -errno : 0) : -errno;
    DIR *dp = fdopendir(fd);
    if (!dp) {
        close(fd);
        return -errno;
    }
    for (struct dirent *d; (d = readdir(dp));) {
        if (dot_or_dotdot(d->d_name))
            continue;
        if (d->d_type == DT_DIR)
            ov_remove_tree(dirfd(dp), d->d_name);
        else
            unlinkat(dirfd(dp), d->d_name, 0);
    }
    closedir(dp);
    return unlinkat(parent, name, AT_REMOVEDIR) < 0 ? -errno : 0;
}

/* ---------------------------------------------------------------------- */
/* Open directories                                                         */

static int take_listing(struct overlay *ov, uint64_t nodeid, struct ov_dirent **e, size_t *n)
{
    struct ov_node *node = ov_get(ov, nodeid);
    if (!node)
        return -ESTALE;
    uint64_t up, low;
    ov_layers(ov, node, &up, &low);
    int err = S_ISDIR(node->type) ? ov_list(ov, up, low, e, n) : -ENOTDIR;
    ov_put(ov, node);
    return err;
}

static int add_dir(struct overlay *ov, struct ov_dir *d, uint64_t *fh)
{
    int err = -EMFILE;
    pthread_mutex_lock(&ov->lock);
    size_t i = 0;
    while (i < ov->ndirs && ov->dirs[i])
        i++;
    if (ov->open_dirs < ov->max_dirs && i == ov->ndirs) {
        size_t cap = ov->ndirs ? ov->ndirs * 2 : 16;
        struct ov_dir **grown = realloc(ov->dirs, cap * sizeof(*grown));
        if (grown) {
            memset(grown + ov->ndirs, 0, (cap - ov->ndirs) * sizeof(*grown));
            ov->dirs = grown;
            ov->ndirs = cap;
        }
    }
    if (ov->open_dirs < ov->max_dirs && i < ov->ndirs) {
        ov->dirs[i] = d;
        ov->open_dirs++;
        *fh = i + 1; /* never 0: engine/session.h, no_open */
        err = 0;
    }
    pthread_mutex_unlock(&ov->lock);
    return err;
}

static int ov_opendir(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t nodeid,
                      uint64_t *fh)
{
    struct overlay *ov = ov_of(be);
    /* The caller's right to read the directory, from its top layer. */
    int err = be->ops->access(be, ctx, nodeid, R_OK);
    struct ov_dir *d = err ? NULL : calloc(1, sizeof(*d));
    if (!err && !d)
        err = -ENOMEM;
    if (!err)
        err = take_listing(ov, nodeid, &d->entries, &d->count);
    if (!err) {
        d->nodeid = nodeid;
        d->refs = 1;
        err = add_dir(ov, d, fh);
        if (err)
            ov_list_free(d->entries, d->count);
    }
    if (err)
        free(d);
    return err;
}

/* The open directory FH names (add_dir), or NULL.  Called with the lock held. */
static struct ov_dir *dir_of(struct overlay *ov, uint64_t fh)
{
    return fh >= 1 && fh <= ov->ndirs ? ov->dirs[fh - 1] : NULL;
}

static struct ov_dir *dir_get(struct overlay *ov, uint64_t fh)
{
    pthread_mutex_lock(&ov->lock);
    struct ov_dir *d = dir_of(ov, fh);
    if (d && d->closed)
        d = NULL;
    if (d)
        d->refs++;
    pthread_mutex_unlock(&ov->lock);
    return d;
}

static void dir_free(struct ov_dir *d)
{
    ov_list_free(d->entries, d->count);
    free(d);
}

static void dir_put(struct overlay *ov, struct ov_dir *d)
{
    pthread_mutex_lock(&ov->lock);
    bool dead = --d->refs == 0;
    pthread_mutex_unlock(&ov->lock);
    if (dead)
        dir_free(d);
}

/* A rewind lists again, unless another READDIR is using the listing. */
static void maybe_relist(struct overlay *ov, struct ov_dir *d)
{
    struct ov_dirent *e;
    size_t n;
    if (take_listing(ov, d->nodeid, &e, &n) < 0)
        return;
    pthread_mutex_lock(&ov->lock);
    bool alone = d->refs == 2; /* the open + us */
    if (alone) {
        struct ov_dirent *old = d->entries;
        size_t old_n = d->count;
        d->entries = e;
        d->count = n;
        e = old;
        n = old_n;
    }
    pthread_mutex_unlock(&ov->lock);
    ov_list_free(e, n);
}

/* Entry I of D's listing as the guest sees it: . and .. first. */
static void nth_entry(struct overlay *ov, const struct ov_dir *d, struct ov_node *dir,
                      uint64_t i, struct fsb_dirent *out)
{
    if (i < 2) {
        pthread_mutex_lock(&ov->lock);
        const struct ov_node *n = i == 0 || !dir->parent ? dir : dir->parent;
        out->ino = n->ino;
        pthread_mutex_unlock(&ov->lock);
        out->name = i == 0 ? "." : "..";
        out->type = DT_DIR;
    } else {
        out->name = d->entries[i - 2].name;
        out->ino = d->entries[i - 2].ino;
        out->type = d->entries[i - 2].type;
    }
    out->next_offset = i + 1;
    out->entry = NULL;
}

static bool emit(struct overlay *ov, struct ov_node *dir, struct fsb_dirent *de, bool plus,
                 fsb_dir_filler fill, void *cookie)
{
    struct fsb_entry entry;
    struct ov_found f;
    if (plus && !dot_or_dotdot(de->name) && ov_find(ov, &ov_daemon_ctx, dir, de->name, &f) == 0 &&
        ov_node_from(ov, dir, de->name, &f, &entry, NULL) == 0) {
        de->entry = &entry;
        de->ino = entry.attr.st_ino;
    }
    if (fill(cookie, de))
        return true;
    if (de->entry) /* the guest never saw it */
        ov_forget(&ov->base, entry.nodeid, 1);
    return false;
}

static int ov_readdir(struct fsb_backend *be, uint64_t nodeid, uint64_t fh, uint64_t offset,
                      bool plus, fsb_dir_filler fill, void *cookie)
{
    struct overlay *ov = ov_of(be);
    struct ov_dir *d = dir_get(ov, fh);
    if (!d)
        return -EBADF;
    struct ov_node *dir = ov_get(ov, d->nodeid);
    int err = dir && d->nodeid == nodeid ? 0 : -EBADF;
    if (!err && offset == 0)
        maybe_relist(ov, d);
    for (uint64_t i = offset; !err && i < d->count + 2; i++) {
        struct fsb_dirent de;
        nth_entry(ov, d, dir, i, &de);
        if (!emit(ov, dir, &de, plus, fill, cookie))
            break;
    }
    if (dir)
        ov_put(ov, dir);
    dir_put(ov, d);
    return err;
}

static int ov_releasedir(struct fsb_backend *be, uint64_t fh)
{
    struct overlay *ov = ov_of(be);
    pthread_mutex_lock(&ov->lock);
    struct ov_dir *d = dir_of(ov, fh);
    bool dead = false;
    if (d && !d->closed) {
        d->closed = true;
        ov->dirs[fh - 1] = NULL;
        ov->open_dirs--;
        dead = --d->refs == 0;
    }
    pthread_mutex_unlock(&ov->lock);
    if (dead)
        dir_free(d);
    return d ? 0 : -EBADF;
}

static int ov_fsyncdir(struct fsb_backend *be, uint64_t fh, bool datasync)
{
    struct overlay *ov = ov_of(be);
    struct ov_dir *d = dir_get(ov, fh);
    if (!d)
        return -EBADF;
    struct ov_node *n = ov_get(ov, d->nodeid);
    uint64_t up = 0;
    if (n) {
        ov_layers(ov, n, &up, NULL);
        ov_put(ov, n);
    }
    dir_put(ov, d);
    int err = 0;
    mode_t type;
    void *pin;
    int fd = up ? passthrough_pin(ov->upper, up, &type, &pin) : -1;
    if (fd >= 0) {
        int dfd = passthrough_reopen(fd, O_RDONLY | O_DIRECTORY);
        passthrough_unpin(ov->upper, pin);
        err = dfd < 0 ? dfd : (datasync ? fdatasync(dfd) : fsync(dfd)) < 0 ? -errno : 0;
        if (dfd >= 0)
            close(dfd);
    }
    return err;
}

void ov_dir_ops(struct fsb_backend_ops *ops)
{
    ops->opendir = ov_opendir;
    ops->readdir = ov_readdir;
    ops->releasedir = ov_releasedir;
    ops->fsyncdir = ov_fsyncdir;
}

void ov_dirs_destroy(struct overlay *ov)
{
    for (size_t i = 0; i < ov->ndirs; i++)
        if (ov->dirs[i])
            dir_free(ov->dirs[i]);
    free(ov->dirs);
}
