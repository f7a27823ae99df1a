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

/*
 * Serves the connection on FD until the peer closes it, sends a frame
 * longer than ML_REQUEST_MAX (logged), or the socket is shut down; then
 * releases every handle and inode the connection held and returns (the
 * caller closes FD).  ALREADY holds the first ALREADY_LEN bytes of the
 * stream (at most a frame header), read by the listener to tell the
 * protocol.
 */
void ml_serve_connection(int fd, unsigned id, const struct fsb_export *exports,
                         unsigned nexports, const uint8_t *already, size_t already_len);

#endif
