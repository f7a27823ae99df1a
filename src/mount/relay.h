/*
 * relay.h - the guest half of a native stream session: moves FUSE messages
 * between the kernel (/dev/fuse) and the host (fsbridged) unchanged, apart
 * from the INIT edits of init_filter.h.
 *
 * The relay is a set of queues, each a path from the kernel to the host and
 * back that no other queue shares (the goal is that a request and its reply
 * cross no CPU on the way that the program making it did not run on):
 *
 *   kind            kernel side                      host side
 *   --------------  -------------------------------  ---------------------
 *   /dev/fuse fd    a clone of the session fd       the queue's stream
 *   (fd_queue)      (FUSE_DEV_IOC_CLONE): its own    connection (shared
 *                   processing list; one reader      when the host has
 *                   thread                           only one, see below)
 *   io_uring ring   one FUSE-over-io_uring queue     the same
 *   (uring_queue.h) per CPU: the kernel hands a
 *                   request to the ring of the CPU
 *                   its program runs on
 *
 * With uring=auto (the default) the relay uses rings when the kernel
 * offers FUSE_OVER_IO_URING in INIT (Linux 6.14+, the fuse module's
 * enable_uring=1) and io_uring works; otherwise fd queues.  The fd queues
 * exist in both cases: the kernel still sends INIT, FORGET and INTERRUPT
 * through /dev/fuse.
 *
 * Host side: one stream connection per queue when the host joins several
 * connections into one session (stream protocol v2); against an older
 * host, all queues share the one connection (a send lock keeps frames
 * whole).  With an io_uring ring per CPU, one connection more: each ring
 * reads the replies of its own connection in its ring (uring_queue.h), so
 * a request and its reply stay on one thread; connection 0 carries what
 * comes through /dev/fuse.  Every other connection has a reader thread.
 * Replies go to the queue their request came from, found in the pending
 * set (pending.h), which also lets the relay fail every request in flight
 * with ENOTCONN when the host goes away instead of leaving guest processes
 * waiting.
 *
 * A connection's reader thread spins for replies before sleeping
 * (halt_poll.h, -o poll_us=), so a fast host's reply is taken without a
 * wake-up, and so does a ring's thread while the host owes it replies
 * (uring_queue.h); an idle mount sleeps.
 *
 * The relay holds no filesystem logic: the host's FUSE engine validates and
 * answers everything, but for what the host's session terms let the relay
 * answer in its stead because the answer is known: FLUSHes with nothing to
 * do (flush_shortcut.h) and plain read-only OPENs with their RELEASEs
 * (lazy_open.h).
 */
#ifndef FSB_MOUNT_RELAY_H
#define FSB_MOUNT_RELAY_H

#include <stdbool.h>
#include <stdint.h>

#include "transport/stream_hello.h"

#define RELAY_MAX_QUEUES 64
/* Connections of one session (the host's limit too). */
#define RELAY_MAX_CONNS 64
/* poll_us: the bound and the default.  The default is 50.  Measured on 2
 * CPUs (bench/README.md, "the rings' spin for replies"), rings spinning up
 * to 50 us for their replies took 19-31% off the wall time of random
 * reads, untar and grep -r (medians; every one of 6 runs with the spin
 * faster than every one of 4 without), 10-18% off create and unlink
 * (within their spread), for no more CPU per operation: the spin costs
 * what the wake-up it saves did; 20 us gained less.  On one CPU it changed
 * nothing (the spin yields).  On /dev/fuse queues the reader threads'
 * spin stayed within the spread between runs either way, so one default
 * serves both.  The daemon's side (--poll-us) stays off. */
#define RELAY_MAX_POLL_US 1000
#define RELAY_DEFAULT_POLL_US 50

enum relay_uring {
    RELAY_URING_AUTO, /* rings when the kernel offers them, else fd queues */
    RELAY_URING_ON,   /* rings, or the mount fails */
    RELAY_URING_OFF,  /* fd queues only */
};

/* Who answers OPEN (open=). */
enum relay_open {
    RELAY_OPEN_AUTO, /* the relay, for a plain read-only one (lazy_open.h) */
    RELAY_OPEN_HOST, /* the host, always */
    RELAY_OPEN_NONE, /* nobody: the kernel stops asking (no_open.h), else as auto */
};

struct relay_config {
    int sock;            /* the host stream, after a successful HELLO */
    /* Opens one more connection of the same session and returns its fd,
     * or -1 after logging why; NULL when the host takes one connection
     * only (a version-1 host).  Called once the host has answered INIT
     * (the host refuses joins before), before the kernel sees the answer,
     * so every queue has its connection by the first request.  CPU: the
     * CPU of the ring that will read the connection, or -1 (for the host,
     * a hint of where to serve it: handshake_join). */
    int (*join)(void *arg, int cpu);
    void *join_arg;
    int session_fd;      /* fuse_session_fd() of the mounted session */
    uint32_t max_frame;  /* largest message of the session (HELLO reply),
                            at least FUSE_MIN_READ_BUFFER */
    /* what the host lets the relay answer in its stead (HELLO reply,
     * version 4; all 0 from an older host) */
    struct fsb_session_terms terms;
    uint16_t version;    /* the session's stream protocol version */
    unsigned queues;     /* fd queues, 1..RELAY_MAX_QUEUES */
    unsigned poll_us;    /* reply spin limit, 0..RELAY_MAX_POLL_US */
    enum relay_uring uring;
    /* no_default_permissions: the guest kernel checks no permission, so
     * every open must reach the host (see init_filter.h) */
    bool host_checks_permissions;
    /* answer FLUSHes that have nothing to do on the host (flush_shortcut.h) */
    bool flush_shortcut;
    /* answer a directory's GETATTR after a change of its entries with the
     * host's attribute note (attr_notes.h) */
    bool attr_notes;
    /* answer GETXATTR security.capability of files just created
     * (caps_shortcut.h) */
    bool caps_shortcut;
    /* answer LOOKUPs of names not yet created in a directory the host
     * noted empty (missing_names.h) */
    bool missing_names;
    /* open=auto: answer plain read-only OPENs when the terms allow it and
     * the guest kernel checks permissions (lazy_open.h); open=none: answer
     * none where no_open.h allows it */
    enum relay_open open_mode;
    /* host_events=on: echo host changes through the mount so that guest
     * inotify watchers see them (host_events.h) */
    bool host_events;
    const char *mountpoint; /* absolute, for the echo */
    const char *address; /* as the user gave it, for messages */
};

/* How a relay ended.  Every ending but RELAY_RUNNING is final. */
enum relay_end {
    RELAY_RUNNING,
    RELAY_UNMOUNTED,    /* the kernel ended the session (umount) */
    RELAY_STOPPED,      /* relay_stop() was called (a signal) */
    RELAY_LOST,         /* the host went away; in-flight requests were failed */
    RELAY_INIT_REFUSED, /* the host answered the kernel's FUSE_INIT with an
                           error, or uring=on and the kernel cannot */
    RELAY_DEVICE_ERROR, /* /dev/fuse failed, e.g. the connection was aborted */
};

struct relay;

/*
 * Starts the relay threads.  Call with the signals the program handles
 * blocked, so that no relay thread receives them.  Returns 0 or -errno
 * after logging one line; on failure some threads may already run, and the
 * caller is expected to exit.
 */
int relay_start(const struct relay_config *cfg, struct relay **out);

/* Waits until the mount is live (the host's INIT reply reached the kernel
 * and the queues are set up).  Returns RELAY_RUNNING then, or how the relay
 * ended before that. */
enum relay_end relay_wait_mounted(struct relay *r);

/* Once mounted: what the queues are, e.g. "io_uring, 2 queues, 2
 * connections", for the log and the mounted line. */
const char *relay_describe(const struct relay *r);

/* Waits until the relay ends; returns how.  Endings other than
 * RELAY_UNMOUNTED and RELAY_STOPPED have already been logged. */
enum relay_end relay_wait(struct relay *r);

/* Ends the relay as RELAY_STOPPED (if it has not ended yet).  The threads
 * keep running until the process exits. */
void relay_stop(struct relay *r);

#endif
