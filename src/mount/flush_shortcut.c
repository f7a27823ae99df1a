/*
 * flush_shortcut.c - see flush_shortcut.h.  Three bounded tables under
 * one mutex: taken at each OPEN, FLUSH, RELEASE, SETLK(W) and at each
 * reply while a read-only OPEN is in flight, never across a system call.
 */
#include "mount/flush_shortcut.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/u64_table.h"
#include "mount/pending.h"

/* Read-only OPENs in flight: at most the relay's requests in flight. */
#define OPEN_SLOTS (2 * PENDING_MAX)
/* Read-only handles open at once; more are simply not shortcut. */
#define HANDLE_SLOTS 8192
/* Processes (and open files, for OFD locks) that ever locked; past half of
 * this, no FLUSH is shortcut. */
#define OWNER_SLOTS 8192

struct flush_shortcut {
    pthread_mutex_t lock;
    bool off; /* the tables cannot be trusted any more: shortcut nothing */
    bool quiet_close; /* any handle will do: the handles are not learnt */
    /* opens.count, read without the lock: most replies need not take it.
     * Set before the OPEN is sent, so its reply sees it. */
    _Atomic size_t opens_in_flight;
    struct fsb_u64_table opens, handles, owners;
    struct fsb_u64_slot open_slots[OPEN_SLOTS];
    struct fsb_u64_slot handle_slots[HANDLE_SLOTS];
    struct fsb_u64_slot owner_slots[OWNER_SLOTS];
};

struct flush_shortcut *flush_shortcut_new(bool quiet_close)
{
    struct flush_shortcut *f = malloc(sizeof(*f));
    if (!f)
        return NULL;
    pthread_mutex_init(&f->lock, NULL);
    f->off = false;
    f->quiet_close = quiet_close;
    atomic_init(&f->opens_in_flight, 0);
    fsb_u64_table_init(&f->opens, f->open_slots, OPEN_SLOTS);
    fsb_u64_table_init(&f->handles, f->handle_slots, HANDLE_SLOTS);
    fsb_u64_table_init(&f->owners, f->owner_slots, OWNER_SLOTS);
    return f;
}

void flush_shortcut_free(struct flush_shortcut *f)
{
    if (!f)
        return;
    pthread_mutex_destroy(&f->lock);
    free(f);
}

/* A read-only OPEN that does not fit is simply not shortcut. */
static void note_open(struct flush_shortcut *f, uint64_t unique, const struct fuse_open_in *in)
{
    if (!f->quiet_close && (in->flags & O_ACCMODE) == O_RDONLY &&
        fsb_u64_table_add(&f->opens, unique, NULL) == 0)
        atomic_store_explicit(&f->opens_in_flight, f->opens.count, memory_order_release);
}

/* From now on every FLUSH goes to the host.  Caller holds the lock. */
static void turn_off(struct flush_shortcut *f, const char *why)
{
    if (!f->off)
        log_warn("%s: every close goes to the host from now on", why);
    f->off = true;
}

static void note_lock(struct flush_shortcut *f, const struct fuse_lk_in *in)
{
    /* flock locks belong to the open file and go with its RELEASE. */
    if (in->lk_flags & FUSE_LK_FLOCK || f->off)
        return;
    if (fsb_u64_table_add(&f->owners, in->owner, NULL) == -ENOSPC)
        turn_off(f, "the relay's table of lock owners is full");
}

static bool may_answer_flush(struct flush_shortcut *f, const struct fuse_flush_in *in)
{
    return !f->off && (f->quiet_close || fsb_u64_table_find(&f->handles, in->fh)) &&
           !fsb_u64_table_find(&f->owners, in->lock_owner);
}

/* The arguments flush_shortcut_forwarding reads, copied out of the
 * request (aligned: its bytes may not be). */
union request_arg {
    struct fuse_open_in open;
    struct fuse_release_in release;
    struct fuse_lk_in lk;
};

static size_t arg_size(uint32_t opcode)
{
    switch (opcode) {
    case FUSE_OPEN:
        return sizeof(struct fuse_open_in);
    case FUSE_RELEASE:
        return sizeof(struct fuse_release_in);
    case FUSE_SETLK:
    case FUSE_SETLKW:
        return sizeof(struct fuse_lk_in);
    default:
        return 0;
    }
}

bool flush_shortcut_answers(struct flush_shortcut *f, const struct fuse_in_header *ih,
                            const void *arg, size_t len)
{
    struct fuse_flush_in in;
    if (!f || ih->opcode != FUSE_FLUSH || len < sizeof(in))
        return false;
    memcpy(&in, arg, sizeof(in)); /* the request's bytes may not be aligned */
    pthread_mutex_lock(&f->lock);
    bool answer = may_answer_flush(f, &in);
    pthread_mutex_unlock(&f->lock);
    return answer;
}

void flush_shortcut_forwarding(struct flush_shortcut *f, const struct fuse_in_header *ih,
                               const void *arg, size_t len)
{
    size_t need = arg_size(ih->opcode);
    if (!f || need == 0 || (len < need && ih->opcode == FUSE_OPEN))
        return; /* an OPEN not understood is simply not shortcut */
    union request_arg a;
    if (len >= need)
        memcpy(&a, arg, need);
    pthread_mutex_lock(&f->lock);
    if (len < need)
        turn_off(f, "a RELEASE or lock request too short to read");
    else if (ih->opcode == FUSE_OPEN)
        note_open(f, ih->unique, &a.open);
    else if (ih->opcode == FUSE_RELEASE)
        /* Before it is sent: the host may give the number out again
         * as soon as it has the RELEASE. */
        fsb_u64_table_remove(&f->handles, a.release.fh, NULL);
    else
        note_lock(f, &a.lk);
    pthread_mutex_unlock(&f->lock);
}

void flush_shortcut_reply(struct flush_shortcut *f, const struct fuse_out_header *oh,
                          const void *body, size_t len)
{
    if (!f || !atomic_load_explicit(&f->opens_in_flight, memory_order_acquire))
        return;
    pthread_mutex_lock(&f->lock);
    if (fsb_u64_table_remove(&f->opens, oh->unique, NULL)) {
        atomic_store_explicit(&f->opens_in_flight, f->opens.count, memory_order_relaxed);
        if (oh->error == 0 && len >= sizeof(struct fuse_open_out)) {
            struct fuse_open_out out;
            memcpy(&out, body, sizeof(out));
            fsb_u64_table_add(&f->handles, out.fh, NULL); /* full: not shortcut */
        }
    }
    pthread_mutex_unlock(&f->lock);
}

void flush_shortcut_own_handle(struct flush_shortcut *f, uint64_t fh, bool opened)
{
    if (!f)
        return;
    pthread_mutex_lock(&f->lock);
    if (opened)
        fsb_u64_table_add(&f->handles, fh, NULL); /* full: not shortcut */
    else
        fsb_u64_table_remove(&f->handles, fh, NULL);
    pthread_mutex_unlock(&f->lock);
}
