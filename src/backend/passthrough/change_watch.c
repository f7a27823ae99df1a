/*
 * change_watch.c - see change_watch.h.  One thread per export reads the
 * events (fanotify or inotify) and turns each into calls of the
 * subscribers' sinks; change_watch_post does the same for fsbridged's own
 * changes on the worker that made them, for every export's watcher.  The
 * subscriber list has its own lock, taken before any inode table's lock
 * and never the other way round.
 */
#include "backend/passthrough/change_watch.h"
#include "backend/passthrough/inode_table.h"
#include "backend/passthrough/passthrough.h"
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/fanotify.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#define EVENT_BUFFER_SIZE (64 * 1024)
#define INOTIFY_BUDGET_MAX 65536
#define HANDLE_MAX_BYTES 128
#define HANDLE_SLOTS 1024
#define HANDLE_SLOT_BYTES 40 /* ext4 8, xfs 8-24, btrfs 20-40, tmpfs 12 */

/* The marks' events: content, attributes (chmod, chown, utimes, xattrs,
 * link counts) and names; FAN_ONDIR for directories as well. */
#define FAN_EVENTS (FAN_MODIFY | FAN_ATTRIB | FAN_CREATE | FAN_DELETE | FAN_MOVED_FROM | \
                    FAN_MOVED_TO | FAN_ONDIR)
#define IN_EVENTS (IN_MODIFY | IN_ATTRIB | IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ONLYDIR)

struct change_sub {
    struct inode_table *table;
    const struct change_sink *sink;
    void *cookie;
    bool listed;
    struct change_sub *next;
};

/* An inotify watch: its directory, reopened by handle to resolve names. */
struct watched_dir {
    dev_t dev;
    ino_t ino;
    struct file_handle *handle;
};

/*
 * The watcher's cache of file handles it opened and the (dev, ino) each
 * named, direct-mapped, used by its thread only.  fanotify's filesystem
 * mark reports every change on the whole filesystem, and a steady writer
 * (a build, a log, outside the export or in it) changes the same few
 * files and directories over and over: after the first event of each,
 * no open_by_handle_at.  A handle names one inode for good (its
 * generation is part of it), so a slot never goes wrong; at worst the
 * inode is gone and its number reused, and a late event of the old one
 * invalidates the new one's node, in vain.
 */
struct handle_slot {
    int type;
    unsigned bytes; /* 0: empty */
    unsigned char key[HANDLE_SLOT_BYTES];
    dev_t dev;
    ino_t ino;
};

struct change_watch {
    enum change_mode mode;
    struct change_watch *next_fanotify; /* in fanotify_watches, once started */
    char name[64];
    int fd;           /* the fanotify or inotify fd */
    /* The export root: the mark's path (O_PATH), then open_by_handle_at's
     * mount fd (a directory opened inside the sandbox). */
    int root_fd;
    int stop_fd;      /* eventfd: the thread ends */
    pid_t self;
    bool started;
    pthread_t thread;

    pthread_mutex_t subs_lock;
    struct change_sub *subs;

    dev_t dev;          /* of the export root: the marked filesystem */
    bool ino32_handles; /* its handles start with the inode number (gone_handle_inode) */
    struct handle_slot handles[HANDLE_SLOTS]; /* the thread's */
    uint64_t events, handle_opens;            /* the thread's, for the log */

    pthread_mutex_t dirs_lock; /* inotify: guards everything below */
    struct watched_dir *dirs;  /* index: watch descriptor */
    int ndirs;
    unsigned watches, budget;
    bool budget_logged;
};

/*
 * The started fanotify watchers of the process, whichever export each
 * serves.  fanotify drops every event of fsbridged's pid, so a change one
 * export makes is posted to all of them: another export may serve the
 * same directory (export_paths.c lets plain exports overlap), and its
 * watcher would hear of it no other way.  Taken before any subs_lock.
 */
static pthread_rwlock_t fanotify_watches_lock = PTHREAD_RWLOCK_INITIALIZER;
static struct change_watch *fanotify_watches;
static atomic_bool any_fanotify_watch;

/* ---- dispatch ---------------------------------------------------------- */

/*
 * S's node id of (DEV, INO), 0 if it has none; a change of a node it has
 * counts in the session (its sink's `changed`) before anything is queued.
 *
 * What the count is for (fuse_ops.c, reply_timeout): a reply that makes
 * a node in the guest (LOOKUP, READDIRPLUS, CREATE...) carries attributes
 * read on the host before the guest kernel has the node, and an
 * INVAL_INODE pushed in between is dropped there (no inode yet), so a
 * reply built after the session's count moved is not cached.  The count
 * need only move for inodes in S's table:
 *  - one in the table when its change is seen here is counted before its
 *    invalidation is queued: a reply built after the invalidation went
 *    out (and may have been dropped) has seen the count move;
 *  - one not in the table when its change is seen here joins it later,
 *    and its attributes are read again once it is in (passthrough.c,
 *    restat_joined; a node already in the table before its stat is not):
 *    such a reply carries attributes newer than the change;
 *  - a name created, removed or renamed is a change of its directory,
 *    and a reply about a name is about a name in a directory the guest
 *    holds, which is in the table the whole time.
 * So a change outside the export, or of a file no session has looked up,
 * uncaches nothing.  The count is per session, not per inode: one per
 * (dev, ino) hash bucket would also keep replies about other files of a
 * busy export cached, but its snapshot would have to be taken in the
 * backend before each node's stat (lookup, each READDIRPLUS entry,
 * create, mkdir, link, revive...) and carried to the engine's reply,
 * while the session's count is one load when a request comes and one
 * when its reply is built.
 */
static uint64_t known_change(const struct change_sub *s, dev_t dev, ino_t ino)
{
    uint64_t id = inode_nodeid_of(s->table, dev, ino);
    if (id)
        s->sink->changed(s->cookie);
    return id;
}

static void dispatch_inode(struct change_watch *w, const struct change_sub *origin, dev_t dev,
                           ino_t ino, int64_t off, int64_t len)
{
    pthread_mutex_lock(&w->subs_lock);
    for (struct change_sub *s = w->subs; s; s = s->next) {
        uint64_t id = s == origin ? 0 : known_change(s, dev, ino);
        if (id)
            s->sink->inval_inode(s->cookie, id, off, len);
    }
    pthread_mutex_unlock(&w->subs_lock);
}

/* A name in a directory appeared, went or moved: the name's dentry goes,
 * and the directory's attributes and cached listing with it. */
static void dispatch_entry(struct change_watch *w, const struct change_sub *origin, dev_t dev,
                           ino_t ino, const char *name)
{
    pthread_mutex_lock(&w->subs_lock);
    for (struct change_sub *s = w->subs; s; s = s->next) {
        uint64_t id = s == origin ? 0 : known_change(s, dev, ino);
        if (!id)
            continue;
        s->sink->inval_entry(s->cookie, id, name);
        s->sink->inval_inode(s->cookie, id, 0, 0);
    }
    pthread_mutex_unlock(&w->subs_lock);
}

/* A change of an inode that cannot be identified any more (its handle
 * no longer opens: the file is gone): nothing can be pushed, and it
 * counts in the sessions that know DIR (its directory, when the event
 * names one: DIR_OK), or in every session. */
static void dispatch_unidentified(struct change_watch *w, bool dir_ok, dev_t dir_dev,
                                  ino_t dir_ino)
{
    pthread_mutex_lock(&w->subs_lock);
    for (struct change_sub *s = w->subs; s; s = s->next) {
        if (!dir_ok)
            s->sink->changed(s->cookie);
        else
            known_change(s, dir_dev, dir_ino);
    }
    pthread_mutex_unlock(&w->subs_lock);
}

static void dispatch_overflow(struct change_watch *w)
{
    log_warn("export '%s': the kernel's change queue overflowed: every session drops its cache",
             w->name);
    pthread_mutex_lock(&w->subs_lock);
    for (struct change_sub *s = w->subs; s; s = s->next) {
        s->sink->changed(s->cookie);
        s->sink->inval_all(s->cookie);
    }
    pthread_mutex_unlock(&w->subs_lock);
}

bool change_watch_posts_wanted(void)
{
    return atomic_load_explicit(&any_fanotify_watch, memory_order_acquire);
}

void change_watch_post_inode(const struct change_sub *origin, dev_t dev, ino_t ino, int64_t off,
                             int64_t len)
{
    if (!change_watch_posts_wanted())
        return;
    pthread_rwlock_rdlock(&fanotify_watches_lock);
    for (struct change_watch *w = fanotify_watches; w; w = w->next_fanotify)
        dispatch_inode(w, origin, dev, ino, off, len);
    pthread_rwlock_unlock(&fanotify_watches_lock);
}

void change_watch_post_entry(const struct change_sub *origin, dev_t dir_dev, ino_t dir_ino,
                             const char *name)
{
    if (!change_watch_posts_wanted())
        return;
    pthread_rwlock_rdlock(&fanotify_watches_lock);
    for (struct change_watch *w = fanotify_watches; w; w = w->next_fanotify)
        dispatch_entry(w, origin, dir_dev, dir_ino, name);
    pthread_rwlock_unlock(&fanotify_watches_lock);
}

static void list_fanotify_watch(struct change_watch *w)
{
    pthread_rwlock_wrlock(&fanotify_watches_lock);
    w->next_fanotify = fanotify_watches;
    fanotify_watches = w;
    atomic_store_explicit(&any_fanotify_watch, true, memory_order_release);
    pthread_rwlock_unlock(&fanotify_watches_lock);
}

static void unlist_fanotify_watch(struct change_watch *w)
{
    pthread_rwlock_wrlock(&fanotify_watches_lock);
    struct change_watch **p = &fanotify_watches;
    while (*p && *p != w)
        p = &(*p)->next_fanotify;
    if (*p)
        *p = w->next_fanotify;
    atomic_store_explicit(&any_fanotify_watch, fanotify_watches != NULL, memory_order_release);
    pthread_rwlock_unlock(&fanotify_watches_lock);
}

struct change_sub *change_watch_subscribe(struct change_watch *w, struct inode_table *t,
                                          const struct change_sink *sink, void *cookie)
{
    struct change_sub *s = malloc(sizeof(*s));
    if (!s)
        return NULL;
    *s = (struct change_sub){ .table = t, .sink = sink, .cookie = cookie, .listed = true };
    pthread_mutex_lock(&w->subs_lock);
    s->next = w->subs;
    w->subs = s;
    pthread_mutex_unlock(&w->subs_lock);
    return s;
}

void change_watch_unsubscribe(struct change_watch *w, struct change_sub *sub)
{
    pthread_mutex_lock(&w->subs_lock);
    struct change_sub **p = &w->subs;
    while (sub->listed && *p != sub)
        p = &(*p)->next;
    if (sub->listed)
        *p = sub->next;
    sub->listed = false;
    pthread_mutex_unlock(&w->subs_lock);
}

void change_watch_sub_free(struct change_watch *w, struct change_sub *sub)
{
    change_watch_unsubscribe(w, sub);
    free(sub);
}

/* ---- host identities ------------------------------------------------- */

/* (dev, ino) of the inode an open fd refers to; false if it cannot. */
static bool identify_fd(int fd, dev_t *dev, ino_t *ino)
{
    struct stat st;
    bool ok = fstat(fd, &st) == 0;
    close(fd);
    *dev = st.st_dev;
    *ino = st.st_ino;
    return ok;
}

static uint32_t handle_hash(const struct file_handle *fh)
{
    uint32_t h = 2166136261u ^ (uint32_t)fh->handle_type; /* FNV-1a */
    for (unsigned i = 0; i < fh->handle_bytes; i++)
        h = (h ^ fh->f_handle[i]) * 16777619u;
    return h;
}

/* FH's slot in the watcher's handle cache, NULL for a handle too long to
 * be kept. */
static struct handle_slot *handle_slot_of(struct change_watch *w, const struct file_handle *fh)
{
    if (fh->handle_bytes == 0 || fh->handle_bytes > HANDLE_SLOT_BYTES)
        return NULL;
    return &w->handles[handle_hash(fh) % HANDLE_SLOTS];
}

static bool slot_holds(const struct handle_slot *slot, const struct file_handle *fh)
{
    return slot->bytes == fh->handle_bytes && slot->type == fh->handle_type &&
           memcmp(slot->key, fh->f_handle, fh->handle_bytes) == 0;
}

/* (dev, ino) of a file handle on the export's filesystem; false for one
 * that no longer opens (the inode is gone).  Seen lately, it is not
 * opened again: see struct handle_slot. */
static bool identify_handle(struct change_watch *w, struct file_handle *fh, dev_t *dev,
                            ino_t *ino)
{
    struct handle_slot *slot = handle_slot_of(w, fh);
    if (slot && slot_holds(slot, fh)) {
        *dev = slot->dev;
        *ino = slot->ino;
        return true;
    }
    w->handle_opens++;
    int fd = open_by_handle_at(w->root_fd, fh, O_PATH | O_CLOEXEC);
    if (fd < 0 || !identify_fd(fd, dev, ino))
        return false;
    if (slot) {
        *slot = (struct handle_slot){ .type = fh->handle_type, .bytes = fh->handle_bytes,
                                      .dev = *dev, .ino = *ino };
        memcpy(slot->key, fh->f_handle, fh->handle_bytes);
    }
    return true;
}

/*
 * The inode number a handle of a gone inode still names, on a filesystem
 * whose handles say it plainly: ext2/3/4 and xfs (with 32-bit inode
 * numbers) encode FILEID_INO32_GEN or _PARENT (<linux/exportfs.h>): the
 * number, then the generation.  tmpfs uses the same types with another
 * layout, btrfs others: false there.  The number may belong to a new inode
 * by now: a change counted for a session that knows that one only costs
 * it a lookup, while counting in every session made a busy host (a build
 * creating and removing directories beside the export) keep every
 * session's replies out of the guest's cache.
 */
static bool gone_handle_inode(const struct change_watch *w, const struct file_handle *fh,
                              dev_t *dev, ino_t *ino)
{
    enum { FILEID_INO32_GEN = 1, FILEID_INO32_GEN_PARENT = 2 };
    if (!w->ino32_handles || fh->handle_bytes < 8 ||
        (fh->handle_type != FILEID_INO32_GEN && fh->handle_type != FILEID_INO32_GEN_PARENT))
        return false;
    uint32_t n;
    memcpy(&n, fh->f_handle, sizeof(n));
    *dev = w->dev;
    *ino = n;
    return true;
}

/* ---- fanotify ---------------------------------------------------------- */

/* A file handle of an event, copied out: records in the buffer are not
 * aligned (names have any length). */
struct event_handle {
    struct file_handle fh;
    unsigned char bytes[HANDLE_MAX_BYTES];
};

/* What one event's info records say. */
struct fan_event {
    uint64_t mask;
    bool has_dir, has_object;
    struct event_handle dir;    /* DFID_NAME or DFID */
    struct event_handle object; /* FID */
    char name[NAME_MAX + 1];    /* DFID_NAME, else "" */
};

/* Copies the handle at P (LEN bytes left in its record) into OUT; false if
 * it does not fit. */
static bool copy_handle(const char *p, size_t len, struct event_handle *out)
{
    if (len < sizeof(out->fh))
        return false;
    memcpy(&out->fh, p, sizeof(out->fh));
    if (out->fh.handle_bytes > HANDLE_MAX_BYTES || out->fh.handle_bytes > len - sizeof(out->fh))
        return false;
    memcpy(out->fh.f_handle, p + sizeof(out->fh), out->fh.handle_bytes);
    return true;
}

/* Reads one info record (LEN bytes at P) into EV. */
static void parse_fan_record(const char *p, size_t len, struct fan_event *ev)
{
    struct fanotify_event_info_fid info;
    memcpy(&info, p, sizeof(info));
    const char *h = p + sizeof(info);
    size_t left = len - sizeof(info);
    if (info.hdr.info_type == FAN_EVENT_INFO_TYPE_FID) {
        ev->has_object = copy_handle(h, left, &ev->object);
    } else if (info.hdr.info_type == FAN_EVENT_INFO_TYPE_DFID ||
               info.hdr.info_type == FAN_EVENT_INFO_TYPE_DFID_NAME) {
        ev->has_dir = copy_handle(h, left, &ev->dir);
        size_t at = sizeof(ev->dir.fh) + ev->dir.fh.handle_bytes;
        if (ev->has_dir && info.hdr.info_type == FAN_EVENT_INFO_TYPE_DFID_NAME && at < left)
            snprintf(ev->name, sizeof(ev->name), "%.*s", (int)(left - at), h + at);
    }
}

static void parse_fan_info(const char *event, const struct fanotify_event_metadata *m,
                           struct fan_event *ev)
{
    ev->mask = m->mask;
    ev->has_dir = ev->has_object = false;
    ev->name[0] = 0;
    const char *p = event + m->metadata_len, *end = event + m->event_len;
    while (p + sizeof(struct fanotify_event_info_fid) <= end) {
        struct fanotify_event_info_header hdr;
        memcpy(&hdr, p, sizeof(hdr));
        if (hdr.len < sizeof(struct fanotify_event_info_fid) || hdr.len > (size_t)(end - p))
            return;
        parse_fan_record(p, hdr.len, ev);
        p += hdr.len;
    }
}

/* The inode whose content or attributes changed: the FID record, or for
 * a directory (which has none) its own DFID_NAME record, named ".". */
static struct file_handle *event_object(struct fan_event *ev)
{
    if (ev->has_object)
        return &ev->object.fh;
    if (ev->has_dir && strcmp(ev->name, ".") == 0)
        return &ev->dir.fh;
    return NULL;
}

static void handle_name_event(struct change_watch *w, struct fan_event *ev)
{
    dev_t dev;
    ino_t ino;
    if (identify_handle(w, &ev->dir.fh, &dev, &ino))
        dispatch_entry(w, NULL, dev, ino, ev->name);
    else if (gone_handle_inode(w, &ev->dir.fh, &dev, &ino))
        dispatch_unidentified(w, true, dev, ino); /* the directory is gone */
    else
        dispatch_unidentified(w, false, 0, 0);
}

static void handle_inode_event(struct change_watch *w, struct fan_event *ev)
{
    dev_t dev = 0;
    ino_t ino = 0;
    struct file_handle *obj = event_object(ev);
    if (obj && identify_handle(w, obj, &dev, &ino)) {
        dispatch_inode(w, NULL, dev, ino, ev->mask & FAN_MODIFY ? 0 : -1, 0);
        return;
    }
    /* The inode is gone: its directory, when the event names one that
     * still opens or is known by number, and its own number narrow down
     * who may care. */
    bool dir_ok = ev->has_dir && &ev->dir.fh != obj &&
                  (identify_handle(w, &ev->dir.fh, &dev, &ino) ||
                   gone_handle_inode(w, &ev->dir.fh, &dev, &ino));
    dev_t own_dev;
    ino_t own_ino;
    bool own_ok = obj && gone_handle_inode(w, obj, &own_dev, &own_ino);
    if (dir_ok || !own_ok)
        dispatch_unidentified(w, dir_ok, dev, ino);
    if (own_ok)
        dispatch_unidentified(w, true, own_dev, own_ino);
}

static void handle_fan_event(struct change_watch *w, struct fan_event *ev)
{
    w->events++;
    if (ev->mask & (FAN_CREATE | FAN_DELETE | FAN_MOVED_FROM | FAN_MOVED_TO) && ev->has_dir &&
        ev->name[0] && strcmp(ev->name, ".") != 0)
        handle_name_event(w, ev);
    if (ev->mask & (FAN_MODIFY | FAN_ATTRIB))
        handle_inode_event(w, ev);
}

/* One event at P with LEFT bytes in the buffer; returns its length, or 0
 * at the end of what was read. */
static size_t read_fan_event(struct change_watch *w, const char *p, size_t left,
                             struct fan_event *ev)
{
    struct fanotify_event_metadata m;
    if (left < sizeof(m))
        return 0;
    memcpy(&m, p, sizeof(m));
    if (m.event_len < sizeof(m) || m.event_len > left || m.metadata_len > m.event_len)
        return 0;
    if (m.mask & FAN_Q_OVERFLOW) {
        dispatch_overflow(w);
    } else if (m.pid != w->self) { /* ours are posted by the backend, with their origin */
        parse_fan_info(p, &m, ev);
        handle_fan_event(w, ev);
    }
    return m.event_len;
}

/* Reads what is queued; true if every event was fsbridged's own. */
static bool read_fan_events(struct change_watch *w, char *buf)
{
    struct fan_event ev;
    ssize_t n;
    uint64_t others = w->events;
    while ((n = read(w->fd, buf, EVENT_BUFFER_SIZE)) > 0) {
        size_t len;
        for (size_t at = 0; (len = read_fan_event(w, buf + at, (size_t)n - at, &ev)); at += len)
            ;
    }
    return w->events == others;
}

/* A filesystem mark needs CAP_SYS_ADMIN and a filesystem with file
 * handles and an fsid; -errno if this one cannot be marked. */
static int open_fanotify(struct change_watch *w)
{
    int fd = fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK | FAN_REPORT_DFID_NAME |
                               FAN_REPORT_FID,
                           O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    char path[32];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", w->root_fd);
    if (fanotify_mark(fd, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, FAN_EVENTS, AT_FDCWD, path) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    w->fd = fd;
    w->mode = CHANGE_FANOTIFY;
    return 0;
}

/* ---- inotify ----------------------------------------------------------- */

/* Half the user's watches, so other programs of the same user keep some. */
static unsigned inotify_budget(void)
{
    unsigned max = 8192;
    FILE *f = fopen("/proc/sys/fs/inotify/max_user_watches", "r");
    if (f) {
        if (fscanf(f, "%u", &max) != 1)
            max = 8192;
        fclose(f);
    }
    max /= 2;
    return max > INOTIFY_BUDGET_MAX ? INOTIFY_BUDGET_MAX : max;
}

static int open_inotify(struct change_watch *w)
{
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0)
        return -errno;
    w->fd = fd;
    w->mode = CHANGE_INOTIFY;
    w->budget = inotify_budget();
    return 0;
}

static struct file_handle *handle_of(int fd)
{
    struct file_handle *fh = malloc(sizeof(*fh) + HANDLE_MAX_BYTES);
    int mount_id;
    if (fh) {
        fh->handle_bytes = HANDLE_MAX_BYTES;
        if (name_to_handle_at(fd, "", fh, &mount_id, AT_EMPTY_PATH) < 0) {
            free(fh);
            fh = NULL;
        }
    }
    return fh;
}

/* Called with dirs_lock held: records the new watch WD. */
static void remember_watch(struct change_watch *w, int wd, int fd, dev_t dev, ino_t ino)
{
    if (wd >= w->ndirs) {
        int n = wd * 2 + 16;
        struct watched_dir *d = realloc(w->dirs, (size_t)n * sizeof(*d));
        if (!d)
            return;
        memset(d + w->ndirs, 0, (size_t)(n - w->ndirs) * sizeof(*d));
        w->dirs = d;
        w->ndirs = n;
    }
    if (w->dirs[wd].handle) /* the same directory again: inotify reused its watch */
        return;
    w->dirs[wd] = (struct watched_dir){ .dev = dev, .ino = ino, .handle = handle_of(fd) };
    w->watches++;
}

void change_watch_dir_seen(struct change_watch *w, int fd, dev_t dev, ino_t ino)
{
    if (!w || w->mode != CHANGE_INOTIFY)
        return;
    char path[32];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    pthread_mutex_lock(&w->dirs_lock);
    if (w->watches < w->budget) {
        int wd = inotify_add_watch(w->fd, path, IN_EVENTS);
        if (wd >= 0)
            remember_watch(w, wd, fd, dev, ino);
    } else if (!w->budget_logged) {
        w->budget_logged = true;
        log_warn("export '%s': all %u inotify watches in use: directories looked up from now "
                 "on are not tracked (cache=coherent may serve stale data there)",
                 w->name, w->budget);
    }
    pthread_mutex_unlock(&w->dirs_lock);
}

/* The child NAME of watched directory D, as (dev, ino). */
static bool identify_child(struct change_watch *w, const struct watched_dir *d,
                           const char *name, dev_t *dev, ino_t *ino)
{
    if (!d->handle)
        return false;
    int dirfd = open_by_handle_at(w->root_fd, d->handle, O_PATH | O_CLOEXEC);
    if (dirfd < 0)
        return false;
    struct stat st;
    bool ok = fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
    close(dirfd);
    *dev = st.st_dev;
    *ino = st.st_ino;
    return ok;
}

static void handle_in_event(struct change_watch *w, const struct inotify_event *e)
{
    pthread_mutex_lock(&w->dirs_lock);
    struct watched_dir d = e->wd >= 0 && e->wd < w->ndirs ? w->dirs[e->wd]
                                                          : (struct watched_dir){ 0 };
    if (e->mask & IN_IGNORED && d.handle) {
        free(w->dirs[e->wd].handle);
        w->dirs[e->wd].handle = NULL;
        w->watches--;
        d.handle = NULL;
    }
    pthread_mutex_unlock(&w->dirs_lock);
    if (!d.dev && !d.ino)
        return;
    dev_t dev;
    ino_t ino;
    if (e->len == 0 && e->mask & (IN_MODIFY | IN_ATTRIB))
        dispatch_inode(w, NULL, d.dev, d.ino, e->mask & IN_MODIFY ? 0 : -1, 0);
    else if (e->len && e->mask & (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO))
        dispatch_entry(w, NULL, d.dev, d.ino, e->name);
    else if (e->len && e->mask & (IN_MODIFY | IN_ATTRIB) &&
             identify_child(w, &d, e->name, &dev, &ino))
        dispatch_inode(w, NULL, dev, ino, e->mask & IN_MODIFY ? 0 : -1, 0);
    else if (e->len && e->mask & (IN_MODIFY | IN_ATTRIB))
        dispatch_unidentified(w, true, d.dev, d.ino); /* the name is gone already */
}

static void read_in_events(struct change_watch *w, char *buf)
{
    ssize_t n;
    while ((n = read(w->fd, buf, EVENT_BUFFER_SIZE)) > 0) {
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *e = (const void *)p;
            if (e->mask & IN_Q_OVERFLOW)
                dispatch_overflow(w);
            else
                handle_in_event(w, e);
            p += sizeof(*e) + e->len;
        }
    }
}

/* ---- the thread and its life ------------------------------------------ */

/*
 * After a batch of fsbridged's own events (fanotify cannot leave out a
 * process's events: they are read and dropped), the thread waits this
 * long before it looks again, so that a guest's burst of creates or
 * removals comes in batches: woken for each, the thread cost a context
 * switch per file, on a CPU the session's threads needed (bench/README.md,
 * "the change watcher's wake-ups").  After a batch with anyone else's
 * change it looks again at once, so a host's changes keep their delay;
 * one that comes within a guest's burst waits at most this long, well
 * inside the coherence bound.
 */
#define WATCH_BATCH_US 1000

static void *watch_main(void *arg)
{
    struct change_watch *w = arg;
    char *buf = aligned_alloc(8, EVENT_BUFFER_SIZE);
    struct pollfd p[2] = { { .fd = w->fd, .events = POLLIN }, { .fd = w->stop_fd, .events = POLLIN } };
    while (buf && poll(p, 2, -1) >= 0 && !(p[1].revents & POLLIN)) {
        if (w->mode != CHANGE_FANOTIFY)
            read_in_events(w, buf); /* inotify cannot tell whose they are */
        else if (read_fan_events(w, buf))
            usleep(WATCH_BATCH_US);
    }
    free(buf);
    return NULL;
}

struct change_watch *change_watch_open(int root_fd, const char *name)
{
    struct change_watch *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    snprintf(w->name, sizeof(w->name), "%s", name);
    w->self = getpid();
    w->root_fd = fcntl(root_fd, F_DUPFD_CLOEXEC, 0);
    w->stop_fd = eventfd(0, EFD_CLOEXEC);
    /* FSBRIDGE_CHANGE_WATCH=inotify: the fallback on a machine with
     * fanotify, for tests. */
    const char *force = getenv("FSBRIDGE_CHANGE_WATCH");
    int fan_err = w->root_fd < 0                          ? -errno
                  : force && strcmp(force, "inotify") == 0 ? -EPERM
                                                            : open_fanotify(w);
    int err = fan_err && w->root_fd >= 0 ? open_inotify(w) : fan_err;
    if (err || w->stop_fd < 0) {
        log_warn("export '%s': host changes cannot be tracked (%s): cache=coherent is served "
                 "as cache=auto", name, strerror(err ? -err : errno));
        if (w->root_fd >= 0)
            close(w->root_fd);
        if (w->stop_fd >= 0)
            close(w->stop_fd);
        free(w);
        return NULL;
    }
    pthread_mutex_init(&w->subs_lock, NULL);
    pthread_mutex_init(&w->dirs_lock, NULL);
    if (w->mode == CHANGE_FANOTIFY)
        log_info("export '%s': host changes tracked with fanotify (filesystem mark)", name);
    else
        log_info("export '%s': host changes tracked with inotify on looked-up directories "
                 "(fanotify: %s), up to %u of them", name, strerror(-fan_err), w->budget);
    return w;
}

/* What gone_handle_inode needs to know of the export's filesystem. */
static void note_filesystem(struct change_watch *w)
{
    struct stat st;
    if (fstat(w->root_fd, &st) != 0)
        return;
    w->dev = st.st_dev;
    w->ino32_handles = passthrough_handles_start_with_ino(w->root_fd);
}

int change_watch_start(struct change_watch *w, int root_fd)
{
    /* open_by_handle_at refuses an O_PATH mount fd (EBADF) */
    char path[32];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", root_fd);
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    close(w->root_fd);
    w->root_fd = fd;
    note_filesystem(w);
    int err = pthread_create(&w->thread, NULL, watch_main, w);
    w->started = err == 0;
    if (w->started && w->mode == CHANGE_FANOTIFY)
        list_fanotify_watch(w);
    return -err;
}

void change_watch_close(struct change_watch *w)
{
    if (!w)
        return;
    unlist_fanotify_watch(w); /* no post reaches it after this */
    if (w->started) {
        uint64_t one = 1;
        if (write(w->stop_fd, &one, sizeof(one)) != sizeof(one))
            log_warn("export '%s': cannot stop the change watcher", w->name);
        pthread_join(w->thread, NULL);
    }
    if (w->mode == CHANGE_FANOTIFY)
        log_info("export '%s': change watcher: %llu events, %llu file handles opened", w->name,
                 (unsigned long long)w->events, (unsigned long long)w->handle_opens);
    for (int i = 0; i < w->ndirs; i++)
        free(w->dirs[i].handle);
    free(w->dirs);
    close(w->fd);
    close(w->stop_fd);
    close(w->root_fd);
    pthread_mutex_destroy(&w->subs_lock);
    pthread_mutex_destroy(&w->dirs_lock);
    free(w);
}

enum change_mode change_watch_mode(const struct change_watch *w)
{
    return w->mode;
}

bool change_watch_sees_all(const struct change_watch *w, dev_t dev)
{
    return w && w->mode == CHANGE_FANOTIFY && w->started && dev == w->dev;
}
