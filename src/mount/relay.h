/*
 * relay.h - the guest half of a native stream session: moves FUSE messages
 * between the kernel (/dev/fuse) and the host (fsbridged) unchanged, apart
 * from the INIT edits of init_filter.h.
 *
 * Reader threads, each on its own clone of the session's /dev/fuse fd, read
 * requests and write each to the stream as one frame.  One thread reads the
 * stream and writes each reply back to the fd its request came from.  The
 * relay keeps track of every request in flight (pending.h), so that when
 * the host goes away it can fail them all with ENOTCONN instead of leaving
 * guest processes waiting forever.
 *
 * The relay holds no filesystem logic: the host's FUSE engine validates and
 * answers everything.
 */
#ifndef FSB_MOUNT_RELAY_H
#define FSB_MOUNT_RELAY_H

#include <stdint.h>

#define RELAY_DEFAULT_THREADS 4
#define RELAY_MAX_THREADS 64

struct relay_config {
    int sock;            /* the host stream, after a successful HELLO */
    int session_fd;      /* fuse_session_fd() of the mounted session */
    uint32_t max_frame;  /* largest message of the session (HELLO reply),
                            at least FUSE_MIN_READ_BUFFER */
    unsigned threads;    /* /dev/fuse reader threads, 1..RELAY_MAX_THREADS */
    const char *address; /* as the user gave it, for messages */
};

/* How a relay ended.  Every ending but RELAY_RUNNING is final. */
enum relay_end {
    RELAY_RUNNING,
    RELAY_UNMOUNTED,    /* the kernel ended the session (umount) */
    RELAY_STOPPED,      /* relay_stop() was called (a signal) */
    RELAY_LOST,         /* the host went away; in-flight requests were failed */
    RELAY_INIT_REFUSED, /* the host answered the kernel's FUSE_INIT with an error */
    RELAY_DEVICE_ERROR, /* /dev/fuse failed, e.g. the connection was aborted */
};

struct relay;

/*
 * Starts the relay threads.  Call with the signals the program handles
 * blocked, so that no relay thread receives them.  Returns 0 or -errno; on
 * failure some threads may already run, and the caller is expected to exit.
 */
int relay_start(const struct relay_config *cfg, struct relay **out);

/* Waits until the mount is live (the host's INIT reply reached the kernel).
 * Returns RELAY_RUNNING then, or how the relay ended before that. */
enum relay_end relay_wait_mounted(struct relay *r);

/* Waits until the relay ends; returns how.  Endings other than
 * RELAY_UNMOUNTED and RELAY_STOPPED have already been logged. */
enum relay_end relay_wait(struct relay *r);

/* Ends the relay as RELAY_STOPPED (if it has not ended yet).  The threads
 * keep running until the process exits. */
void relay_stop(struct relay *r);

#endif
