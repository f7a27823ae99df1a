/*
 * handshake.h - connecting fsbridge-mount to the host and opening a native
 * stream session (the HELLO of stream_hello.h).
 */
#ifndef FSB_MOUNT_HANDSHAKE_H
#define FSB_MOUNT_HANDSHAKE_H

#include <stdbool.h>
#include <stdint.h>

#include "common/address.h"
#include "transport/stream_hello.h"

/* How long the host may take to answer the HELLO: a listener that accepts
 * and never answers must not hang a boot. */
#define HANDSHAKE_TIMEOUT_MS 10000

/*
 * Connects to ADDR and asks for EXPORT_NAME ("" for the host's default
 * export).  Returns the connected fd and sets *max_frame to the session's
 * largest message, or returns -1 after logging one line saying why.
 */
int handshake_connect(const struct fsb_address *addr, const char *export_name,
                      uint32_t *max_frame);

/* What the first connection of a session learnt: enough to join more
 * connections to it (docs/stream-protocol.md, "Sessions of many
 * connections"). */
struct fsb_session_ticket {
    bool joinable;      /* the host speaks version 2: connections may join */
    uint16_t version;   /* of the session */
    uint32_t max_frame; /* the session's largest message */
    uint8_t token[FSB_SESSION_TOKEN_SIZE];
    struct fsb_session_terms terms; /* version 4; all 0 before */
};

/* handshake_connect() that also fills *TICKET.  Returns the fd or -1. */
int handshake_open(const struct fsb_address *addr, const char *export_name,
                   struct fsb_session_ticket *ticket);

/*
 * Connects to ADDR again and joins the session of TICKET (which must be
 * joinable), as one more connection of the same FUSE session: it carries
 * no INIT, and the host refuses a join before the first connection's INIT
 * has been answered.  CPU >= 0: the HELLO names it as the CPU of the queue
 * this connection serves (FSB_HELLO_CPU), if the host speaks version 3;
 * -1: no hint.  Returns the fd, or -1 after logging why.
 */
int handshake_join(const struct fsb_address *addr, const char *export_name,
                   const struct fsb_session_ticket *ticket, int cpu);

#endif
