/*
 * ml_server.h - fsbridged's matchlock frontend: serves one connection of
 * an unchanged matchlock guest (guest-fused) through the backend interface.
 *
 * The stream listeners hand a connection over when its first byte is zero
 * (a matchlock frame length; a native HELLO starts with "FSBR").  The
 * protocol is one request, then its response, per connection, so a
 * connection is served by the one thread the listener gave it; several
 * connections run side by side, bounded by --max-sessions.
 */
#ifndef FSB_ML_SERVER_H
#define FSB_ML_SERVER_H

#include "engine/session.h"

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/*
 * Serves the connection on FD until the peer closes it, sends a frame
 * longer than ML_REQUEST_MAX (logged), or the socket is shut down; then
 * releases every handle and inode the connection held and returns (the
 * caller closes FD).  ALREADY holds the first ALREADY_LEN bytes of the
 * stream (at most a frame header), read by the listener to tell the
 * protocol.  Only the exports whose bit is set in VISIBLE (bit i:
 * EXPORTS[i]) exist for this client: the others are outside every export,
 * as an unknown path is.  The first frame must be complete by FIRST_BY
 * (CLOCK_MONOTONIC; NULL: no limit), as a native HELLO must: an idle
 * connection holds no session slot for long.  Open files and inodes count
 * on GUEST's budgets; the connection itself is one of its sessions
 * (counted by the caller), and with one request in flight it holds at most
 * one request and one response (ML_REQUEST_MAX, the largest response) of
 * queued bytes.
 */
void ml_serve_connection(int fd, unsigned id, const struct fsb_export *exports,
                         unsigned nexports, uint64_t visible, struct fsb_guest *guest,
                         const uint8_t *already, size_t already_len,
                         const struct timespec *first_by);

#endif
