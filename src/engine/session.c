/*
 * session.c - see session.h.
 */
#include "engine/session.h"
#include "backend/passthrough/passthrough.h"
#include "engine/created_handles.h"
#include "engine/lazy_handles.h"
#include "engine/xattr_map.h"

#include <errno.h>
#include <stdlib.h>

/* Per-session limit of known inodes: ~200 bytes each.  Open handles are
 * real fds: their limit comes from RLIMIT_NOFILE (passthrough.c). */
#define SESSION_MAX_INODES 1000000

struct fsb_backend *fsb_export_backend(const struct fsb_export *exp,
                                       const struct passthrough_config *cfg, int *err)
{
    if (exp->overlay[0])
        return overlay_new(cfg, &exp->overlay_dirs, err);
    return passthrough_new(cfg, err);
}

struct fsb_session *fsb_session_new(const struct fsb_export *exp, size_t max_frame,
                                    struct fsb_guest *guest, int *err)
{
    struct fsb_session *s = calloc(1, sizeof(*s));
    if (!s) {
        *err = -ENOMEM;
        return NULL;
    }
    /* Tests only: widens the window between a LOOKUP's host lookup and
     * its reply, and after the first looked-up entry of a READDIRPLUS,
     * where a host change must not get lost (fuse_ops.c). */
    const char *delay = getenv("FSBRIDGE_TEST_LOOKUP_DELAY_MS");
    s->test_lookup_delay_ms = delay ? (unsigned)strtoul(delay, NULL, 10) : 0;
    /* Tests only: between a new node's stat and its joining the inode
     * table (passthrough.c, restat_joined). */
    const char *join = getenv("FSBRIDGE_TEST_JOIN_DELAY_MS");
    struct passthrough_config cfg = {
        .root_fd = exp->root_fd,
        .max_inodes = SESSION_MAX_INODES,
        .max_handles = passthrough_session_handle_limit(),
        .writeback = exp->writeback,
        .allow_devices = exp->allow_devices,
        /* Stream guests run fsbridge-mount, which mounts with
         * default_permissions: their kernel checks group membership. */
        .trust_guest_groups = true,
        .guest = guest,
        .watch = exp->watch,
        .mapped_caps_xattr = exp->xattr_map ? FSB_XATTR_MAPPED_CAPS : NULL,
        .test_join_delay_ms = join ? (unsigned)strtoul(join, NULL, 10) : 0,
    };
    s->backend = fsb_export_backend(exp, &cfg, err);
    if (!s->backend) {
        free(s);
        return NULL;
    }
    s->export = exp;
    s->max_frame = max_frame;
    s->guest = guest;
    pthread_mutex_init(&s->waiters_lock, NULL);
    return s;
}

void fsb_session_free(struct fsb_session *s)
{
    if (!s)
        return;
    fsb_lazy_handles_free(s->lazy);
    fsb_created_free(s->created);
    s->backend->ops->destroy(s->backend);
    pthread_mutex_destroy(&s->waiters_lock);
    free(s);
}

int fsb_session_accept_lazy(struct fsb_session *s)
{
    /* At most as many as the session may hold open handles: each mapped
     * one is an open backend handle. */
    s->lazy = fsb_lazy_handles_new(s->backend, passthrough_session_handle_limit());
    return s->lazy ? 0 : -ENOMEM;
}

static bool take_early_interrupt(struct fsb_session *s, uint64_t unique)
{
    for (unsigned i = 0; i < FSB_EARLY_INTERRUPTS; i++) {
        if (s->early_interrupts[i] == unique) {
            s->early_interrupts[i] = 0;
            return true;
        }
    }
    return false;
}

void fsb_session_add_waiter(struct fsb_session *s, struct fsb_waiter *w)
{
    pthread_mutex_lock(&s->waiters_lock);
    atomic_store(&w->interrupted,
                 take_early_interrupt(s, w->unique) || atomic_load(&s->closing));
    w->next = s->waiters;
    s->waiters = w;
    pthread_mutex_unlock(&s->waiters_lock);
}

void fsb_session_remove_waiter(struct fsb_session *s, struct fsb_waiter *w)
{
    pthread_mutex_lock(&s->waiters_lock);
    struct fsb_waiter **p = &s->waiters;
    while (*p && *p != w)
        p = &(*p)->next;
    if (*p)
        *p = w->next;
    pthread_mutex_unlock(&s->waiters_lock);
}

void fsb_session_interrupt(struct fsb_session *s, uint64_t unique)
{
    pthread_mutex_lock(&s->waiters_lock);
    struct fsb_waiter *w = s->waiters;
    while (w && w->unique != unique)
        w = w->next;
    if (w) {
        atomic_store(&w->interrupted, true);
    } else {
        /* The request may not have started waiting yet: remember the
         * interrupt for a while (kernel uniques are never reused). */
        s->early_interrupts[s->early_next] = unique;
        s->early_next = (s->early_next + 1) % FSB_EARLY_INTERRUPTS;
    }
    pthread_mutex_unlock(&s->waiters_lock);
}

void fsb_session_interrupt_waiting(struct fsb_session *s)
{
    pthread_mutex_lock(&s->waiters_lock);
    for (struct fsb_waiter *w = s->waiters; w; w = w->next)
        atomic_store(&w->interrupted, true);
    pthread_mutex_unlock(&s->waiters_lock);
}

void fsb_session_interrupt_all(struct fsb_session *s)
{
    atomic_store(&s->closing, true);
    fsb_session_interrupt_waiting(s);
}
