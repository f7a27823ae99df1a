/*
 * missing_names.c - see missing_names.h.  One mutex; the tables are the
 * relay's usual fixed hash tables (common/u64_table.h), the counts the
 * hot paths read without it kept in atomics beside them.
 */
#include "mount/missing_names.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/u64_table.h"
#include "mount/forgets.h"
#include "mount/notified.h"
#include "transport/stream_hello.h"

#define MKDIR_SLOTS 256    /* MKDIRs in flight: at most 128 */
#define DIR_SLOTS 8192     /* directories answered for: at most 4096 */
#define NAME_SLOTS 131072  /* names that may exist in them: at most 65536 */

struct missing_names {
    pthread_mutex_t lock;
    /* dirs.count and mkdirs.count, for the requests and replies that pass
     * by without the lock */
    _Atomic size_t dirs_known;
    _Atomic size_t mkdirs_in_flight;
    uint64_t notifications;       /* host notifications seen so far */
    struct fuse_entry_out negative; /* the latest note's timeout */
    struct fsb_u64_table mkdirs;  /* unique -> notifications at its forwarding */
    struct fsb_u64_table mkdir_times; /* unique -> monotonic ns of its forwarding (number) */
    /* node ids answered for -> until when (number: monotonic ns; 0: until
     * told) */
    struct fsb_u64_table dirs;
    uint64_t bounded_until; /* the latest end of a bounded note, or 0 */
    struct fsb_u64_table names;   /* name_key() of names that may exist in them */
    struct fsb_u64_slot mkdir_slots[MKDIR_SLOTS];
    struct fsb_u64_slot mkdir_time_slots[MKDIR_SLOTS];
    struct fsb_u64_slot dir_slots[DIR_SLOTS];
    struct fsb_u64_slot name_slots[NAME_SLOTS];
};

struct missing_names *missing_names_new(void)
{
    struct missing_names *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    pthread_mutex_init(&m->lock, NULL);
    fsb_u64_table_init(&m->mkdirs, m->mkdir_slots, MKDIR_SLOTS);
    fsb_u64_table_init(&m->mkdir_times, m->mkdir_time_slots, MKDIR_SLOTS);
    fsb_u64_table_init(&m->dirs, m->dir_slots, DIR_SLOTS);
    fsb_u64_table_init(&m->names, m->name_slots, NAME_SLOTS);
    return m;
}

void missing_names_free(struct missing_names *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->lock);
    free(m);
}

/* The first NUL-terminated string of the LEN bytes at P (its length in
 * *N), or NULL when there is none: the kernel's bytes, but a name the
 * relay reads must end where the kernel says. */
static const char *first_name(const void *p, size_t len, size_t *n)
{
    const char *end = p ? memchr(p, 0, len) : NULL;
    if (!end || end == p)
        return NULL;
    *n = (size_t)(end - (const char *)p);
    return p;
}

/* FNV-1a of the directory's node id and the name. */
static uint64_t name_key(uint64_t dir, const char *name, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned i = 0; i < sizeof(dir); i++)
        h = (h ^ ((dir >> (8 * i)) & 0xff)) * 0x100000001b3ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)name[i]) * 0x100000001b3ull;
    return h;
}

static bool is_dot_or_dotdot(const char *name, size_t n)
{
    return name[0] == '.' && (n == 1 || (n == 2 && name[1] == '.'));
}

/* Caller holds the lock. */
static void sync_counts(struct missing_names *m)
{
    atomic_store_explicit(&m->dirs_known, m->dirs.count, memory_order_release);
    atomic_store_explicit(&m->mkdirs_in_flight, m->mkdirs.count, memory_order_release);
}

static void drop_dir(void *arg, uint64_t nodeid)
{
    struct missing_names *m = arg;
    fsb_u64_table_remove(&m->dirs, nodeid, NULL);
}

static void drop_all(struct missing_names *m)
{
    fsb_u64_table_clear(&m->dirs, NULL, NULL);
    fsb_u64_table_clear(&m->names, NULL, NULL);
}

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Caller holds the lock.  Bounded notes all end by m->bounded_until (a
 * session has either kind of note, never both): past it, every directory
 * goes at once, so that lookups take the fast path again. */
static void sweep(struct missing_names *m, uint64_t now)
{
    if (m->bounded_until && now >= m->bounded_until) {
        drop_all(m);
        m->bounded_until = 0;
    }
}

/* Caller holds the lock.  Whether DIR is answered for now, and the
 * negative entry to answer with in *OUT: the note's, or for a bounded
 * note (FSB_EMPTY_DIR_BOUNDED) what is left of its time, so that the
 * kernel keeps the entry no longer than the note holds. */
static bool answered_for(struct missing_names *m, uint64_t dir, uint64_t now,
                         struct fuse_entry_out *out)
{
    struct fsb_u64_slot *d = fsb_u64_table_find(&m->dirs, dir);
    if (!d)
        return false;
    uint64_t until = d->number;
    if (until && now >= until) {
        drop_dir(m, dir);
        return false;
    }
    *out = m->negative;
    if (until)
        *out = (struct fuse_entry_out){ .entry_valid = (until - now) / 1000000000u,
                                        .entry_valid_nsec = (uint32_t)((until - now) % 1000000000u) };
    return true;
}

bool missing_names_answer(struct missing_names *m, const struct fuse_in_header *ih,
                          const void *name, size_t len, struct fuse_entry_out *out)
{
    size_t n;
    const char *s;
    if (!m || ih->opcode != FUSE_LOOKUP ||
        !atomic_load_explicit(&m->dirs_known, memory_order_acquire) ||
        !(s = first_name(name, len, &n)) || is_dot_or_dotdot(s, n))
        return false;
    uint64_t key = name_key(ih->nodeid, s, n);
    pthread_mutex_lock(&m->lock);
    uint64_t now = m->bounded_until ? now_ns() : 0;
    sweep(m, now);
    bool missing = !fsb_u64_table_find(&m->names, key) && answered_for(m, ih->nodeid, now, out);
    sync_counts(m);
    pthread_mutex_unlock(&m->lock);
    return missing;
}

/* Caller holds the lock.  NAME (N bytes) may exist in DIR from now on. */
static void may_exist(struct missing_names *m, uint64_t dir, const char *name, size_t n)
{
    if (m->bounded_until)
        sweep(m, now_ns());
    if (!fsb_u64_table_find(&m->dirs, dir))
        return;
    int err = fsb_u64_table_add(&m->names, name_key(dir, name, n), NULL);
    if (err && err != -EEXIST) { /* full: start over */
        log_debug("names of new directories: table full, forgetting %zu directories",
                  m->dirs.count);
        drop_all(m);
    }
}

/* Caller holds the lock.  A RENAME or RENAME2 (ARG: fuse_rename_in or
 * fuse_rename2_in, both beginning with newdir; NAMES: old name, new
 * name): the new name may exist in newdir. */
static void renaming(struct missing_names *m, const void *arg, size_t arg_len,
                     const char *names, size_t len)
{
    uint64_t newdir;
    size_t n_old, n_new;
    const char *newname;
    if (arg_len < sizeof(newdir) || !first_name(names, len, &n_old)) {
        drop_all(m); /* the target is unknown: it may be any directory */
        return;
    }
    memcpy(&newdir, arg, sizeof(newdir));
    newname = first_name(names + n_old + 1, len - n_old - 1, &n_new);
    if (!newname) {
        drop_dir(m, newdir);
        return;
    }
    may_exist(m, newdir, newname, n_new);
}

/* Requests that add no name to any directory: those on files, those
 * that read a directory or its attributes, those that remove a name (its
 * LOOKUP just keeps going to the host). */
static bool leaves_names(uint32_t opcode)
{
    switch (opcode) {
    case FUSE_LOOKUP:
    case FUSE_GETATTR:
    case FUSE_SETATTR:
    case FUSE_READLINK:
    case FUSE_ACCESS:
    case FUSE_STATFS:
    case FUSE_OPEN:
    case FUSE_READ:
    case FUSE_WRITE:
    case FUSE_FLUSH:
    case FUSE_RELEASE:
    case FUSE_FSYNC:
    case FUSE_GETLK:
    case FUSE_SETLK:
    case FUSE_SETLKW:
    case FUSE_FALLOCATE:
    case FUSE_LSEEK:
    case FUSE_COPY_FILE_RANGE:
    case FUSE_POLL:
    case FUSE_BMAP:
    case FUSE_OPENDIR:
    case FUSE_READDIR:
    case FUSE_READDIRPLUS:
    case FUSE_RELEASEDIR:
    case FUSE_FSYNCDIR:
    case FUSE_GETXATTR:
    case FUSE_LISTXATTR:
    case FUSE_SETXATTR:
    case FUSE_REMOVEXATTR:
    case FUSE_UNLINK:
    case FUSE_RMDIR:
    case FUSE_TMPFILE: /* an unnamed file: a LINK names it later */
        return true;
    }
    return false;
}

static bool creates_name(uint32_t opcode)
{
    return opcode == FUSE_CREATE || opcode == FUSE_MKNOD || opcode == FUSE_MKDIR ||
           opcode == FUSE_SYMLINK || opcode == FUSE_LINK;
}

/* Caller holds the lock.  Request IH may add a name somewhere. */
static void learn(struct missing_names *m, const struct fuse_in_header *ih, const void *arg,
                  size_t arg_len, const void *name, size_t len)
{
    uint32_t op = ih->opcode;
    size_t n;
    const char *s;
    if (op == FUSE_FORGET || op == FUSE_BATCH_FORGET) {
        if (!fuse_each_forgotten(ih, arg, arg_len, drop_dir, m))
            drop_all(m);
    } else if (op == FUSE_RENAME || op == FUSE_RENAME2) {
        renaming(m, arg, arg_len, name, len);
    } else if (creates_name(op) && (s = first_name(name, len, &n))) {
        may_exist(m, ih->nodeid, s, n);
    } else {
        drop_dir(m, ih->nodeid); /* a request the relay does not know, or a bad name */
    }
}

void missing_names_forwarding(struct missing_names *m, const struct fuse_in_header *ih,
                              const void *arg, size_t arg_len, const void *name, size_t len)
{
    if (!m || leaves_names(ih->opcode) ||
        (ih->opcode != FUSE_MKDIR && !atomic_load_explicit(&m->dirs_known, memory_order_acquire)))
        return;
    pthread_mutex_lock(&m->lock);
    learn(m, ih, arg, arg_len, name, len);
    if (ih->opcode == FUSE_MKDIR && /* full: no note taken for it */
        fsb_u64_table_add(&m->mkdirs, ih->unique, (void *)(uintptr_t)m->notifications) == 0 &&
        fsb_u64_table_add(&m->mkdir_times, ih->unique, NULL) == 0)
        fsb_u64_table_find(&m->mkdir_times, ih->unique)->number = now_ns();
    sync_counts(m);
    pthread_mutex_unlock(&m->lock);
}

void missing_names_replied(struct missing_names *m, uint64_t unique)
{
    if (!m || !atomic_load_explicit(&m->mkdirs_in_flight, memory_order_acquire))
        return;
    pthread_mutex_lock(&m->lock);
    fsb_u64_table_remove(&m->mkdirs, unique, NULL);
    fsb_u64_table_remove(&m->mkdir_times, unique, NULL);
    sync_counts(m);
    pthread_mutex_unlock(&m->lock);
}

/* The end of a bounded note's time: its timeout from SENT, the MKDIR's
 * forwarding (before the host made the directory, so never late); 0 (no
 * end) for a note the host's pushes keep true; UINT64_MAX for a bounded
 * note of no time, which is not taken. */
static uint64_t note_end(const struct fsb_empty_dir_note *note, uint64_t sent)
{
    if (!(note->flags & FSB_EMPTY_DIR_BOUNDED))
        return 0;
    uint64_t ns = note->entry_valid_nsec % 1000000000u;
    if (note->entry_valid == 0 && ns == 0)
        return UINT64_MAX;
    uint64_t left = note->entry_valid > UINT64_MAX / 1000000000u / 2
                        ? UINT64_MAX / 2
                        : note->entry_valid * 1000000000u + ns;
    return sent + left > sent ? sent + left : UINT64_MAX - 1;
}

/* Caller holds the lock. */
static void take_note(struct missing_names *m, const struct fsb_empty_dir_note *note)
{
    void *since;
    struct fsb_u64_slot *sent = fsb_u64_table_find(&m->mkdir_times, note->unique);
    uint64_t until = sent ? note_end(note, sent->number) : UINT64_MAX;
    fsb_u64_table_remove(&m->mkdir_times, note->unique, NULL);
    if (!fsb_u64_table_remove(&m->mkdirs, note->unique, &since) ||
        (uintptr_t)since != (uintptr_t)m->notifications || until == UINT64_MAX)
        return; /* not a MKDIR in flight, a notification may have overtaken
                 * it, or a bounded note of no time */
    if (!until)
        m->negative = (struct fuse_entry_out){ .entry_valid = note->entry_valid,
                                               .entry_valid_nsec = note->entry_valid_nsec };
    else if (until > m->bounded_until)
        m->bounded_until = until;
    if (fsb_u64_table_add(&m->dirs, note->nodeid, NULL) == -ENOSPC) {
        /* full (of bounded notes long run out, mostly): start over */
        log_debug("new directories: table full, forgetting %zu of them", m->dirs.count);
        drop_all(m);
        fsb_u64_table_add(&m->dirs, note->nodeid, NULL);
    }
    struct fsb_u64_slot *d = fsb_u64_table_find(&m->dirs, note->nodeid);
    if (d)
        d->number = until;
}

void missing_names_note(struct missing_names *m, const void *msg, size_t len)
{
    struct fsb_empty_dir_note note;
    if (!fsb_empty_dir_note_decode(msg, len, &note)) {
        log_debug("malformed empty-directory note of %zu bytes dropped", len);
        return;
    }
    if (!m)
        return;
    pthread_mutex_lock(&m->lock);
    take_note(m, &note);
    sync_counts(m);
    pthread_mutex_unlock(&m->lock);
}

void missing_names_notified(struct missing_names *m, const void *msg, size_t len)
{
    struct fuse_out_header oh;
    uint64_t node;
    if (!m)
        return;
    memcpy(&oh, msg, sizeof(oh)); /* the reader checked the length */
    pthread_mutex_lock(&m->lock);
    m->notifications++;
    if (fuse_notified_node(&oh, (const char *)msg + sizeof(oh), len - sizeof(oh), &node))
        drop_dir(m, node);
    else
        drop_all(m);
    sync_counts(m);
    pthread_mutex_unlock(&m->lock);
}
