/*
 * session.h - exports and the engine's per-guest session state.
 *
 * A session is one guest's FUSE connection (one stream connection, later one
 * vhost-user device).  It owns a backend instance, so node ids, file
 * handles and lookup counts never cross sessions, and it remembers what
 * FUSE_INIT negotiated.
 */
#ifndef FSB_SESSION_H
#define FSB_SESSION_H

#include "backend/backend.h"
#include "common/id_set.h"
#include "backend/overlay/overlay.h"
#include "common/budget.h"

struct change_watch;
struct fsb_notify_out;
struct fsb_lazy_handles;
struct fsb_created_handles;

#include <limits.h>
#include <stddef.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

enum fsb_cache_mode {
    FSB_CACHE_NEVER,
    FSB_CACHE_METADATA,
    FSB_CACHE_AUTO,
    FSB_CACHE_ALWAYS,
    FSB_CACHE_COHERENT, /* ALWAYS's timeouts, kept true by notifications (notify_out.h) */
};

/* One exported directory, as configured on the command line. */
struct fsb_export {
    char name[256];
    char path[PATH_MAX];
    int root_fd; /* O_PATH, opened at start-up */
    bool readonly;
    enum fsb_cache_mode cache;
    bool writeback;
    bool allow_devices;
    bool no_xattr;          /* xattr requests get ENOSYS */
    bool xattr_map;         /* xattr=map: guest trusted.*, security.* mapped (xattr_map.h) */
    struct fsb_id_set vsock_cids; /* cid=: the vsock peers it is served to; empty: any */
    /* Copy-on-write (overlay.h): UPPER and its work dir, "" for none. */
    char overlay[PATH_MAX];
    char overlay_work[PATH_MAX];
    struct overlay_dirs overlay_dirs; /* opened at start-up */
    /* cache=coherent: host changes (change_watch.h), opened before the
     * sandbox; NULL when they cannot be tracked (served as cache=auto). */
    struct change_watch *watch;
    /* Its host filesystem keeps directory offsets across opens
     * (passthrough_dir_offsets_stable): cache=coherent may then list without
     * OPENDIR (fuse_ops.c). */
    bool dir_offsets_stable;
    /* A FLUSH here only drops record locks (passthrough_close_quiet):
     * stream clients may answer the FLUSH of a process that never locked
     * (FSB_TERMS_QUIET_CLOSE).  Decided once the sandbox is entered. */
    bool close_quiet;
};

/* The backend instance for one session of EXP: passthrough, or overlay
 * over it.  NULL with *err set. */
struct fsb_backend *fsb_export_backend(const struct fsb_export *exp,
                                       const struct passthrough_config *cfg, int *err);

/* A request that may wait (a blocking lock): INTERRUPT can find it. */
struct fsb_waiter {
    uint64_t unique;
    atomic_bool interrupted;
    struct fsb_waiter *next;
};

#define FSB_EARLY_INTERRUPTS 16

struct fsb_session {
    const struct fsb_export *export;
    struct fsb_backend *backend;
    size_t max_frame;      /* largest request or reply, header included */
    /* Whose budgets the session's files and inodes count on (NULL: none).
     * Every connection of a session belongs to this guest. */
    struct fsb_guest *guest;

    /* Set once by FUSE_INIT (which the transport runs before any other
     * request of the session is dispatched). */
    bool initialized;
    uint32_t minor;
    uint32_t kernel_minor; /* the kernel's own, for notifications it knows */
    uint32_t max_write;    /* also the largest READ we answer */
    uint64_t flags;        /* negotiated FUSE_* init flags, flags2 << 32 */

    atomic_bool closing;   /* the transport is tearing the session down */
    /* cache=coherent: notifications flow (set before the first request,
     * never cleared), so the guest may cache for long. */
    bool coherent;
    /* a stream client of version 4 or later: it accepts attribute notes
     * (stream_hello.h, FSB_NOTIFY_ATTRS), set before the first request */
    bool attr_notes;
    /* a stream client of version 6 or later: it accepts empty-directory
     * notes (stream_hello.h, FSB_NOTIFY_EMPTY_DIR), set before the first
     * request */
    bool empty_dir_notes;
    /* version 7 or later: its empty-directory notes may be bounded by their
     * timeout (FSB_EMPTY_DIR_BOUNDED), where no change watch pushes */
    bool bounded_dir_notes;
    struct fsb_notify_out *notify; /* the transport's, see notify_out.h */
    /* Handles the client makes up for read-only OPENs it answers itself
     * (lazy_handles.h); NULL, and such a handle is an unknown one (EBADF),
     * unless the transport accepted them (fsb_session_accept_lazy). */
    struct fsb_lazy_handles *lazy;
    /* The client sends fh 0 for every file it opened without an OPEN (a
     * stream client of version 5: FSB_TERMS_NO_OPEN, stream_hello.h): a
     * request with it opens its node for itself alone (fuse_ops.c, "files").
     * The backend never gives out handle 0.  Set before the first request. */
    bool no_open;
    /* a stream client of version 7 or later: it offers FUSE_NO_OPEN_SUPPORT
     * only when it answers OPEN with ENOSYS (created_handles.h) */
    bool created_ids;
    /* The session runs without opens (created_handles.h): its kernel sends
     * no RELEASE, so the handles of the files it creates are bounded
     * here.  NULL otherwise; set at INIT. */
    struct fsb_created_handles *created;
    /* cache=coherent: host changes of inodes this session knows (and was
     * not the origin of), counted as the watcher sees them (fuse_ops.c,
     * reply_timeout) */
    atomic_uint_least64_t host_changes;
    unsigned test_lookup_delay_ms; /* FSBRIDGE_TEST_LOOKUP_DELAY_MS, session.c */

    pthread_mutex_t waiters_lock;
    struct fsb_waiter *waiters;
    /* INTERRUPTs that came before their request started waiting. */
    uint64_t early_interrupts[FSB_EARLY_INTERRUPTS];
    unsigned early_next;
};

/* Creates a session of GUEST (may be NULL) with its own backend instance,
 * or NULL with *err. */
struct fsb_session *fsb_session_new(const struct fsb_export *exp, size_t max_frame,
                                    struct fsb_guest *guest, int *err);
void fsb_session_free(struct fsb_session *s);

/* The session accepts lazy handles (fh with FSB_LAZY_FH): a stream
 * session whose client speaks version 4 (stream_server.c), before its
 * first request.  Returns 0 or -ENOMEM. */
int fsb_session_accept_lazy(struct fsb_session *s);

/* Lock waits register here for INTERRUPT; see fuse_ops.c. */
void fsb_session_add_waiter(struct fsb_session *s, struct fsb_waiter *w);
void fsb_session_remove_waiter(struct fsb_session *s, struct fsb_waiter *w);
void fsb_session_interrupt(struct fsb_session *s, uint64_t unique);
/* Interrupts the requests waiting now (a virtqueue is stopping; the
 * session may go on afterwards). */
void fsb_session_interrupt_waiting(struct fsb_session *s);
/* Stops every waiting request, now and later: the session is ending. */
void fsb_session_interrupt_all(struct fsb_session *s);

#endif
