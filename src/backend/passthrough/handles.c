/*
 * handles.c - the passthrough backend's open files and directories.
 *
 * A guest file handle (fh) is an index into this table.  Each entry counts
 * its users, so that a RELEASE racing with a READ on the same fh (which a
 * hostile guest may send) closes the fd only after the READ is done: the fd
 * number can never be reused under a running operation.  Each open handle
 * holds one fd of its guest's budget (common/budget.h).  Slot 0 is never
 * used: fh 0 is what a guest kernel that sends no OPEN carries for every
 * file (engine/session.h, no_open), so no handle may be 0.
 */
#include "backend/passthrough/pt_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#define NO_FREE PT_NO_HANDLE

static int grow(struct passthrough *pt)
{
    unsigned cap = pt->capacity ? pt->capacity * 2 : 64;
    struct pt_handle *h = realloc(pt->handles, cap * sizeof(*h));
    if (!h)
        return -ENOMEM;
    pt->handles = h;
    pt->capacity = cap;
    return 0;
}

int pt_handles_init(struct passthrough *pt)
{
    pt->free_head = NO_FREE;
    for (unsigned i = 0; i < PT_LOCKER_BUCKETS; i++)
        pt->lockers[i] = PT_NO_HANDLE;
    pthread_mutex_init(&pt->handles_lock, NULL);
    int err = grow(pt);
    if (err)
        return err;
    /* slot 0: no users, so never valid */
    pt->handles[0] = (struct pt_handle){ .fd = -1, .closed = true, .next_locker = PT_NO_HANDLE };
    pt->nhandles = 1;
    return 0;
}

int pt_handle_grant(struct passthrough *pt)
{
    return fsb_guest_take(pt->guest, FSB_BUDGET_OPEN, 1);
}

void pt_handle_ungrant(struct passthrough *pt)
{
    fsb_guest_give(pt->guest, FSB_BUDGET_OPEN, 1);
}

int64_t pt_handle_add(struct passthrough *pt, int fd, bool is_dir, const struct stat *st)
{
    int64_t fh = -EMFILE;
    pthread_mutex_lock(&pt->handles_lock);
    if (pt->open_handles >= pt->max_handles)
        goto out;
    if (pt->free_head != NO_FREE) {
        fh = (int64_t)pt->free_head;
        pt->free_head = pt->handles[fh].next_free;
    } else {
        if (pt->nhandles == pt->capacity && (fh = grow(pt)) < 0)
            goto out;
        fh = pt->nhandles++;
    }
    pt->handles[fh] = (struct pt_handle){ .fd = fd, .refs = 1, .is_dir = is_dir,
                                          .dev = st->st_dev, .ino = st->st_ino,
                                          .next_locker = PT_NO_HANDLE };
    pt->open_handles++;
out:
    pthread_mutex_unlock(&pt->handles_lock);
    if (fh < 0)
        pt_handle_ungrant(pt);
    return fh;
}

static unsigned locker_bucket(dev_t dev, ino_t ino)
{
    uint64_t key = ((uint64_t)dev << 32) ^ (uint64_t)ino;
    return (unsigned)((key * 0x9E3779B97F4A7C15ull) >> 56) % PT_LOCKER_BUCKETS;
}

uint64_t pt_first_locker(const struct passthrough *pt, dev_t dev, ino_t ino)
{
    return pt->lockers[locker_bucket(dev, ino)];
}

void pt_handle_note_locker(struct passthrough *pt, uint64_t fh, uint64_t owner, pid_t pid)
{
    struct pt_handle *h = &pt->handles[fh];
    if (!h->has_locked) {
        uint64_t *head = &pt->lockers[locker_bucket(h->dev, h->ino)];
        h->next_locker = *head;
        *head = fh;
        h->has_locked = true;
    }
    h->lock_owner = owner;
    h->lock_pid = pid;
}

void pt_handle_forget_locker(struct passthrough *pt, uint64_t fh)
{
    struct pt_handle *h = &pt->handles[fh];
    if (h->has_locked) {
        uint64_t *link = &pt->lockers[locker_bucket(h->dev, h->ino)];
        while (*link != fh)
            link = &pt->handles[*link].next_locker;
        *link = h->next_locker;
        h->next_locker = PT_NO_HANDLE;
        h->has_locked = false;
    }
    h->lock_owner = 0;
    h->lock_pid = 0;
}

/* Called with the lock held; returns the fd to close (its grant is given
 * back here), or -1. */
static int drop_ref(struct passthrough *pt, uint64_t fh)
{
    struct pt_handle *h = &pt->handles[fh];
    if (--h->refs > 0)
        return -1;
    pt_handle_forget_locker(pt, fh);
    int fd = h->fd;
    h->fd = -1;
    h->next_free = pt->free_head;
    pt->free_head = fh;
    pt->open_handles--;
    pt_handle_ungrant(pt);
    return fd;
}

static bool valid(struct passthrough *pt, uint64_t fh, bool want_dir)
{
    return fh < pt->nhandles && pt->handles[fh].refs > 0 && !pt->handles[fh].closed &&
           pt->handles[fh].is_dir == want_dir;
}

int pt_handle_get(struct passthrough *pt, uint64_t fh, bool want_dir)
{
    int fd = -EBADF;
    pthread_mutex_lock(&pt->handles_lock);
    if (valid(pt, fh, want_dir)) {
        pt->handles[fh].refs++;
        fd = pt->handles[fh].fd;
    }
    pthread_mutex_unlock(&pt->handles_lock);
    return fd;
}

void pt_handle_put(struct passthrough *pt, uint64_t fh)
{
    pthread_mutex_lock(&pt->handles_lock);
    int fd = drop_ref(pt, fh);
    pthread_mutex_unlock(&pt->handles_lock);
    if (fd >= 0)
        close(fd);
}

/* Drops the reference the open holds.  A second RELEASE of the same fh
 * finds it closed (or, once freed, reused by a later open of the guest's). */
int pt_handle_close(struct passthrough *pt, uint64_t fh, bool want_dir)
{
    int fd = -1, err = -EBADF;
    pthread_mutex_lock(&pt->handles_lock);
    if (valid(pt, fh, want_dir)) {
        /* Closed for new users at once; the fd itself goes with the
         * last user. */
        pt->handles[fh].closed = true;
        fd = drop_ref(pt, fh);
        err = 0;
    }
    pthread_mutex_unlock(&pt->handles_lock);
    if (fd >= 0)
        close(fd);
    return err;
}

void pt_handles_destroy(struct passthrough *pt)
{
    for (unsigned i = 0; i < pt->nhandles; i++) {
        if (pt->handles[i].fd >= 0) {
            close(pt->handles[i].fd);
            pt_handle_ungrant(pt);
        }
    }
    free(pt->handles);
    pthread_mutex_destroy(&pt->handles_lock);
}
