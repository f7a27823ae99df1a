/*
 * handshake.h - connecting fsbridge-mount to the host and opening a native
 * stream session (the HELLO of stream_hello.h).
 */
#ifndef FSB_MOUNT_HANDSHAKE_H
#define FSB_MOUNT_HANDSHAKE_H

#include <stdint.h>

#include "common/address.h"

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

#endif
