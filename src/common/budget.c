/*
 * budget.c - see budget.h.  Counters are atomics taken with a
 * compare-and-swap, so a budget is never passed even by a moment's race;
 * only the queued-bytes waiters use the guest's mutex.
 */
#include "common/budget.h"
#include "common/log.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#define LOG_EVERY_SEC 10

static const char *const kind_names[FSB_BUDGET_KINDS] = {
    "open-file", "inode", "queued-byte", "thread", "session",
};

/* What the guest gets when kind K is refused, and what the log says. */
static const int refusal_errno[FSB_BUDGET_KINDS] = {
    EMFILE, ENFILE, EAGAIN, EAGAIN, EAGAIN,
};
static const char *const outcome[FSB_BUDGET_KINDS] = {
    "EMFILE", "ENFILE", "its requests are not read until its replies drain",
    "no more worker or lock-wait threads",
    "too many sessions from this peer: connection refused",
};

static _Atomic size_t pool_size; /* 0: no pool */
static _Atomic size_t pool_used;
static _Atomic int64_t pool_last_log;

void fsb_fd_pool_init(size_t size)
{
    atomic_store(&pool_size, size);
}

size_t fsb_fd_pool_size(void)
{
    return atomic_load(&pool_size);
}

static int64_t now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

/* True when this call owns the next log line of *LAST (one per period). */
static bool may_log(_Atomic int64_t *last)
{
    int64_t now = now_sec(), then = atomic_load(last);
    return (then == 0 || now - then >= LOG_EVERY_SEC) &&
           atomic_compare_exchange_strong(last, &then, now);
}

/* Adds N to *USED unless that passes MAX (0: no limit). */
static bool take_counter(_Atomic size_t *used, size_t max, size_t n)
{
    size_t cur = atomic_load(used);
    do {
        if (max && (cur + n > max || cur + n < cur))
            return false;
    } while (!atomic_compare_exchange_weak(used, &cur, cur + n));
    return true;
}

void fsb_guest_init(struct fsb_guest *g, const char *name, const struct fsb_budget_limits *l)
{
    memset(g, 0, sizeof(*g));
    strncpy(g->name, name, sizeof(g->name) - 1);
    g->limits = l;
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->drained, NULL);
}

void fsb_guest_destroy(struct fsb_guest *g)
{
    pthread_mutex_destroy(&g->lock);
    pthread_cond_destroy(&g->drained);
}

static void log_refusal(struct fsb_guest *g, enum fsb_budget_kind k)
{
    unsigned n = atomic_fetch_add(&g->refused[k], 1) + 1;
    if (!may_log(&g->last_log[k]))
        return;
    atomic_fetch_sub(&g->refused[k], n);
    log_warn("guest %s: %s budget (%zu) reached: %s (%u times since the last line)",
             g->name, kind_names[k], g->limits->max[k], outcome[k], n);
}

static int take_from_pool(size_t n)
{
    if (take_counter(&pool_used, atomic_load(&pool_size), n))
        return 0;
    if (may_log(&pool_last_log))
        log_warn("the guests' fd pool (%zu) is exhausted: ENFILE", atomic_load(&pool_size));
    return -ENFILE;
}

int fsb_guest_take(struct fsb_guest *g, enum fsb_budget_kind k, size_t n)
{
    if (g && !take_counter(&g->used[k], g->limits ? g->limits->max[k] : 0, n)) {
        log_refusal(g, k);
        return -refusal_errno[k];
    }
    if (k == FSB_BUDGET_OPEN) {
        int err = take_from_pool(n);
        if (err) {
            if (g)
                atomic_fetch_sub(&g->used[k], n);
            return err;
        }
    }
    return 0;
}

void fsb_guest_give(struct fsb_guest *g, enum fsb_budget_kind k, size_t n)
{
    if (k == FSB_BUDGET_OPEN)
        atomic_fetch_sub(&pool_used, n);
    if (!g)
        return;
    size_t before = atomic_fetch_sub(&g->used[k], n);
    size_t max = g->limits ? g->limits->max[k] : 0;
    /* Wake the readers when this brings the guest back under budget. */
    if (k == FSB_BUDGET_QUEUED && max && before >= max && before - n < max)
        fsb_guest_wake_all(g);
}

void fsb_guest_charge(struct fsb_guest *g, size_t n)
{
    if (g)
        atomic_fetch_add(&g->used[FSB_BUDGET_QUEUED], n);
}

size_t fsb_guest_used(const struct fsb_guest *g, enum fsb_budget_kind k)
{
    return g ? atomic_load(&g->used[k]) : 0;
}

static bool over_queued(struct fsb_guest *g)
{
    size_t max = g->limits ? g->limits->max[FSB_BUDGET_QUEUED] : 0;
    return max && atomic_load(&g->used[FSB_BUDGET_QUEUED]) >= max;
}

void fsb_guest_wait_room(struct fsb_guest *g, const atomic_bool *stop)
{
    if (!g || !over_queued(g))
        return;
    log_refusal(g, FSB_BUDGET_QUEUED);
    pthread_mutex_lock(&g->lock);
    while (over_queued(g) && !atomic_load(stop))
        pthread_cond_wait(&g->drained, &g->lock);
    pthread_mutex_unlock(&g->lock);
}

void fsb_guest_wake_all(struct fsb_guest *g)
{
    pthread_mutex_lock(&g->lock);
    pthread_cond_broadcast(&g->drained);
    pthread_mutex_unlock(&g->lock);
}
