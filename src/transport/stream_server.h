/*
 * stream_server.h - serves native stream sessions (HELLO, then bare FUSE
 * messages) on listening sockets: Unix, vsock, or inherited fds.
 *
 * Each accepted connection gets a reader thread and a small pool of worker
 * threads that grows on demand (a SETLKW waiting for a lock holds a worker,
 * so the pool must be able to grow past it).  Replies go back in whatever
 * order workers finish.  A connection's failure or bad frame ends only that
 * session; everything the session held is released when it ends.
 */
#ifndef FSB_STREAM_SERVER_H
#define FSB_STREAM_SERVER_H

#include "common/budget.h"
#include "engine/session.h"
#include "transport/peer_rules.h"

struct stream_server_config {
    const struct fsb_export *exports;
    unsigned nexports;
    const int *listen_fds;
    unsigned nlisten;
    unsigned max_workers;   /* per connection */
    unsigned max_sessions;  /* sessions of all guests together */
    /* What one guest may hold (common/budget.h): a guest is a vsock CID,
     * a Unix socket listener's peer uid, or a listener (see peer_of). */
    const struct fsb_budget_limits *guest_limits;
    unsigned poll_us;       /* a reader spins this long at most before sleeping */
    /* Serve a connection whose HELLO names a CPU (FSB_HELLO_CPU) on that
     * CPU, when it is one of the daemon's (--cpu-hints). */
    bool follow_cpu_hints;
    /* Per listener: who may connect (--allow-uid, cid=) and which exports
     * it serves (exports=, and the exports' cid=). */
    const struct fsb_listener_rules *listener_rules;
    int stop_fd;            /* readable when the server must stop */
};

/* Runs until stop_fd becomes readable; then ends all sessions.  Returns 0
 * or -errno. */
int stream_server_run(const struct stream_server_config *cfg);

#endif
