/*
 * fd_cache.c - see fd_cache.h.  One mutex guards the LRU list and the pin
 * counts; the expensive part (reopening by handle) runs outside it.
 */
#include "backend/passthrough/fd_cache.h"

#include <errno.h>
#include <pthread.h>
#include <unistd.h>

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned cache_capacity = 1024;
static unsigned cache_count; /* entries in the LRU (open and evictable) */
static struct fd_cache_entry lru = { .lru_prev = &lru, .lru_next = &lru };

void fd_cache_init(unsigned capacity)
{
    cache_capacity = capacity ? capacity : 1;
}

unsigned fd_cache_capacity(void)
{
    return cache_capacity;
}

void fd_cache_entry_init(struct fd_cache_entry *e, int fd, bool permanent)
{
    e->fd = fd;
    e->pins = 0;
    e->permanent = permanent;
    e->in_lru = false;
    e->lru_prev = e->lru_next = NULL;
}

static void lru_unlink(struct fd_cache_entry *e)
{
    if (!e->in_lru)
        return;
    e->lru_prev->lru_next = e->lru_next;
    e->lru_next->lru_prev = e->lru_prev;
    e->in_lru = false;
    cache_count--;
}

/* Most recently used entries sit at the head. */
static void lru_push_head(struct fd_cache_entry *e)
{
    e->lru_next = lru.lru_next;
    e->lru_prev = &lru;
    lru.lru_next->lru_prev = e;
    lru.lru_next = e;
    e->in_lru = true;
    cache_count++;
}

/* Closes unpinned fds from the tail until at most KEEP remain.  Returns the
 * number closed.  Called with cache_lock held. */
static unsigned evict_down_to(unsigned keep)
{
    unsigned closed = 0;
    struct fd_cache_entry *e = lru.lru_prev;
    while (cache_count > keep && e != &lru) {
        struct fd_cache_entry *prev = e->lru_prev;
        if (e->pins == 0) {
            lru_unlink(e);
            close(e->fd);
            e->fd = -1;
            closed++;
        }
        e = prev;
    }
    return closed;
}

/* Puts an open, non-permanent entry at the head of the LRU. */
static void lru_touch(struct fd_cache_entry *e)
{
    if (e->permanent)
        return;
    lru_unlink(e);
    lru_push_head(e);
    if (cache_count > cache_capacity)
        evict_down_to(cache_capacity);
}

int fd_cache_pin(struct fd_cache_entry *e, fd_cache_reopen_fn reopen, void *arg)
{
    pthread_mutex_lock(&cache_lock);
    if (e->fd >= 0) {
        e->pins++;
        lru_touch(e);
        int fd = e->fd;
        pthread_mutex_unlock(&cache_lock);
        return fd;
    }
    pthread_mutex_unlock(&cache_lock);
    if (!reopen)
        return -EBADF;

    int fd = reopen(arg);
    if (fd < 0)
        return fd;

    pthread_mutex_lock(&cache_lock);
    if (e->fd >= 0) {
        /* Another thread reopened it meanwhile: use theirs. */
        close(fd);
    } else {
        e->fd = fd;
    }
    e->pins++;
    lru_touch(e);
    fd = e->fd;
    pthread_mutex_unlock(&cache_lock);
    return fd;
}

void fd_cache_unpin(struct fd_cache_entry *e)
{
    pthread_mutex_lock(&cache_lock);
    e->pins--;
    pthread_mutex_unlock(&cache_lock);
}

bool fd_cache_offer(struct fd_cache_entry *e, int fd)
{
    bool taken = false;
    pthread_mutex_lock(&cache_lock);
    if (e->fd < 0) {
        e->fd = fd;
        lru_touch(e);
        taken = true;
    }
    pthread_mutex_unlock(&cache_lock);
    return taken;
}

void fd_cache_entry_destroy(struct fd_cache_entry *e)
{
    pthread_mutex_lock(&cache_lock);
    lru_unlink(e);
    if (e->fd >= 0)
        close(e->fd);
    e->fd = -1;
    pthread_mutex_unlock(&cache_lock);
}

bool fd_cache_shrink(void)
{
    pthread_mutex_lock(&cache_lock);
    unsigned closed = evict_down_to(cache_count / 2);
    pthread_mutex_unlock(&cache_lock);
    return closed > 0;
}
