/*
 * connect_error.c - see connect_error.h.
 */
#include "mount/connect_error.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "common/log.h"

/* A vsock connect that reached the host, where nothing accepted: the
 * guest's transport answers RST (ECONNRESET), others refuse or time out. */
static bool nobody_listening(int err)
{
    return err == ECONNRESET || err == ECONNREFUSED || err == ETIMEDOUT;
}

/* The host's end of the connection is not there: no vsock device, or a
 * CID this guest cannot reach. */
static bool no_vsock_route(int err)
{
    return err == ENODEV || err == ENETUNREACH || err == EHOSTUNREACH || err == EADDRNOTAVAIL;
}

static void log_vsock_error(const struct fsb_address *a, int err, const char *host)
{
    const char *why = strerror(err);
    if (nobody_listening(err))
        log_error("cannot connect to %s: no %s answered there (%s); check that it runs on "
                  "the host with --listen vsock:%u (Firecracker, Cloud Hypervisor: "
                  "unix:UDS_PATH_%u) and that %u is its port",
                  a->text, host, why, a->port, a->port, a->port);
    else if (no_vsock_route(err))
        log_error("cannot connect to %s: no vsock path to CID %u (%s); check that the VM "
                  "has a vsock device (QEMU vhost-vsock-pci, Firecracker or Cloud "
                  "Hypervisor vsock) and the CID (the host is 2)",
                  a->text, a->cid, why);
    else if (err == EAFNOSUPPORT)
        log_error("cannot connect to %s: this kernel has no vsock (%s); load "
                  "vmw_vsock_virtio_transport, or use a serial: or unix: address",
                  a->text, why);
    else
        log_error("cannot connect to %s: %s", a->text, why);
}

static void log_unix_error(const struct fsb_address *a, int err, const char *host)
{
    const char *why = strerror(err);
    if (err == ENOENT)
        log_error("cannot connect to %s: no socket there (%s); check the path, and that "
                  "%s runs with --listen %s", a->text, why, host, a->text);
    else if (err == ECONNREFUSED)
        log_error("cannot connect to %s: no %s listens there (%s: the socket file is "
                  "left from a daemon that exited?); check that %s runs with --listen %s",
                  a->text, host, why, host, a->text);
    else
        log_error("cannot connect to %s: %s", a->text, why);
}

void log_connect_error(const struct fsb_address *addr, int err, const char *host)
{
    if (err < 0)
        err = -err;
    switch (addr->kind) {
    case FSB_ADDR_VSOCK:
        log_vsock_error(addr, err, host);
        return;
    case FSB_ADDR_UNIX:
        log_unix_error(addr, err, host);
        return;
    case FSB_ADDR_SERIAL:
    case FSB_ADDR_FD:
        break;
    }
    log_error("cannot connect to %s: %s", addr->text, strerror(err));
}
