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

#include "engine/session.h"

struct stream_server_config {
    const struct fsb_export *exports;
    unsigned nexports;
    const int *listen_fds;
    unsigned nlisten;
    unsigned max_workers;   /* per session */
    unsigned max_sessions;
    unsigned max_sessions_per_peer; /* per listener, and per CID on vsock */
    int stop_fd;            /* readable when the server must stop */
};

/* Runs until stop_fd becomes readable; then ends all sessions.  Returns 0
 * or -errno. */
int stream_server_run(const struct stream_server_config *cfg);

#endif
