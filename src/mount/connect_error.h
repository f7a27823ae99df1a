/*
 * connect_error.h - the one line fsbridge-mount prints when it cannot
 * connect to the host: what the errno means for that kind of address and
 * what to check, since "Connection reset by peer" from vsock only means
 * that nothing listens on that port of the host.
 */
#ifndef FSB_MOUNT_CONNECT_ERROR_H
#define FSB_MOUNT_CONNECT_ERROR_H

#include "common/address.h"

/* Logs the failure of fsb_address_connect(ADDR) with -errno ERR.  HOST
 * names what should answer there ("fsbridged", "a matchlock host"). */
void log_connect_error(const struct fsb_address *addr, int err, const char *host);

#endif
