/*
 * matchlock_client.h - fsbridge-mount's connections to a matchlock host
 * (fsbridged's matchlock frontend, or matchlock's own VFS server).
 *
 * matchlock's protocol allows one request, then its response, per
 * connection, and nothing else: no request ids, no pipelining.  To have
 * several requests of the guest kernel in flight, the client keeps a pool
 * of connections and gives each call a free one, opening another (up to a
 * limit) when all are busy.  A host that refuses or at once closes an extra
 * connection caps the pool where it stands; it is not an error.
 *
 * File handles belong to the connection that opened them on fsbridged (and
 * are global on matchlock's server): a call on a handle is pinned to that
 * connection.  New handles go to the free connection holding the fewest,
 * so that reads of different files spread over the pool.
 *
 * A broken connection, a response that does not decode, or a host that
 * hangs up an idle connection (seen by a watcher thread) mean the host is
 * lost: every connection is shut down, every waiting and later call fails
 * with ENOTCONN, and the on_lost callback runs once.
 */
#ifndef FSB_MOUNT_MATCHLOCK_CLIENT_H
#define FSB_MOUNT_MATCHLOCK_CLIENT_H

#include <stdbool.h>

#include "common/address.h"
#include "matchlock/ml_codec.h"

#define ML_CLIENT_MAX_CONNS 64
/* How long the host may take to answer the probes made before mounting. */
#define ML_CLIENT_STARTUP_TIMEOUT_MS 10000

struct ml_client;
struct ml_conn;

struct ml_client_config {
    const struct fsb_address *addr;
    unsigned max_conns;                 /* 1..ML_CLIENT_MAX_CONNS */
    void (*on_lost)(void *arg);         /* called once, from the thread that saw it */
    void *arg;
};

/*
 * One round trip in progress: after a successful ml_client_call(), resp
 * points into the connection's buffer, which stays the caller's until
 * ml_exchange_done().  conn is the connection used (to pin a new handle).
 */
struct ml_exchange {
    struct ml_client *client;
    struct ml_conn *conn;
    struct ml_response resp;
};

/* Creates the client and opens the first connection.  Returns NULL after
 * logging one line ("cannot connect to ADDRESS: reason"). */
struct ml_client *ml_client_open(const struct ml_client_config *cfg);

/* Closes every connection and frees C: only before the watcher and any
 * caller run (a start that failed). */
void ml_client_close(struct ml_client *c);

/* A time limit on every response (0: none); used until the mount is live,
 * so that a host that accepts and never answers does not hang a boot. */
void ml_client_set_timeout(struct ml_client *c, int timeout_ms);

/* Starts the thread that watches idle connections for a hang-up. */
int ml_client_start_watcher(struct ml_client *c);

/*
 * Sends REQ and waits for the response, on PIN if not NULL (a handle's
 * connection), else on any connection.  Returns 0 with x filled (the
 * caller must call ml_exchange_done(x)), -ENOTCONN if the host is lost,
 * -EINVAL if REQ cannot be encoded, -EIO (logged) for a response over
 * ML_RESPONSE_MAX, which is skipped.  A response's own error is in
 * x->resp.err.
 */
int ml_client_call(struct ml_client *c, struct ml_conn *pin, const struct ml_request *req,
                   struct ml_exchange *x);
void ml_exchange_done(struct ml_exchange *x);

/* Counts the open handles of a connection (to balance new ones). */
void ml_conn_hold(struct ml_client *c, struct ml_conn *conn);
void ml_conn_unhold(struct ml_client *c, struct ml_conn *conn);

/* Why the host was lost ("" while it is not). */
const char *ml_client_lost_reason(struct ml_client *c);

#endif
