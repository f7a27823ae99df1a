/*
 * handshake.c - see handshake.h.  Each way the handshake can fail gets its
 * own message, since this is where a user finds out that the address, the
 * export name or the host is wrong.
 */
#include "mount/handshake.h"

#include <errno.h>
#include <linux/fuse.h>
#include <poll.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/fdio.h"
#include "common/log.h"
#include "mount/connect_error.h"
#include "transport/stream_hello.h"

/* A HELLO; with a JOIN ticket, one that joins its session, naming CPU
 * (>= 0) when the session's version knows the hint (an older host would
 * refuse the flag). */
static int send_hello(int fd, const char *export_name, const struct fsb_session_ticket *join,
                      int cpu)
{
    bool hint = join && cpu >= 0 && cpu <= UINT16_MAX && join->version >= FSB_STREAM_VERSION_CPU;
    struct fsb_hello h = {
        .version = FSB_STREAM_VERSION,
        .byte_order = fsb_native_byte_order(),
        .flags = (uint8_t)((join ? FSB_HELLO_JOIN : 0) | (hint ? FSB_HELLO_CPU : 0)),
        .max_frame = join ? join->max_frame : FSB_DEFAULT_MAX_FRAME,
        .name_len = (uint16_t)strlen(export_name),
        .cpu = hint ? (uint16_t)cpu : 0,
    };
    uint8_t fixed[FSB_HELLO_SIZE];
    fsb_hello_encode(&h, fixed);
    struct iovec iov[3] = {
        { .iov_base = fixed, .iov_len = sizeof(fixed) },
        { .iov_base = (void *)export_name, .iov_len = h.name_len },
        { .iov_base = join ? (void *)join->token : NULL, .iov_len = join ? FSB_SESSION_TOKEN_SIZE : 0 },
    };
    return fsb_writev_full(fd, iov, 3);
}

/*
 * Waits until the HELLO can be written.  A virtio-serial port whose host
 * side is not connected (yet: QEMU's chardev may be reconnecting) blocks
 * writes and polls as hung up, so a serial port is waited on until the
 * deadline; a socket that hung up fails at once.
 */
static int wait_writable(int fd, const struct fsb_address *addr)
{
    for (int waited = 0; waited < HANDSHAKE_TIMEOUT_MS; waited += 100) {
        struct pollfd pfd = { .fd = fd, .events = POLLOUT };
        if (poll(&pfd, 1, HANDSHAKE_TIMEOUT_MS - waited) < 0)
            return -errno;
        if (pfd.revents & POLLOUT)
            return 0;
        if (!pfd.revents)
            break;
        if (addr->kind != FSB_ADDR_SERIAL)
            return -EPIPE;
        poll(NULL, 0, 100); /* the port is not connected on the host: retry */
    }
    return -ETIMEDOUT;
}

static int read_within_timeout(int fd, void *buf, size_t len)
{
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    int n = poll(&pfd, 1, HANDSHAKE_TIMEOUT_MS);
    if (n < 0)
        return -errno;
    if (n == 0)
        return -ETIMEDOUT;
    return fsb_read_full(fd, buf, len);
}

/* The session's terms after a version-4 success (all 0 before). */
static int read_terms(int fd, const struct fsb_hello_reply *reply, struct fsb_session_terms *terms)
{
    uint8_t buf[FSB_SESSION_TERMS_SIZE];
    *terms = (struct fsb_session_terms){ 0 };
    if (reply->version < FSB_STREAM_VERSION_TERMS)
        return 0;
    int err = read_within_timeout(fd, buf, sizeof(buf));
    return err ? err : fsb_session_terms_decode(buf, reply->version, terms);
}

/* Reads the reply and, after a success, the session token (version 2)
 * and terms (version 4).  Returns 0, -ETIMEDOUT, -EPIPE if the host hung
 * up, -EPROTO if what came back is not a HELLO reply, or -errno. */
static int read_hello_reply(int fd, struct fsb_hello_reply *reply, uint8_t *token,
                            struct fsb_session_terms *terms)
{
    uint8_t buf[FSB_HELLO_REPLY_SIZE];
    int err = read_within_timeout(fd, buf, sizeof(buf));
    if (!err)
        err = fsb_hello_reply_decode(buf, reply);
    if (err || reply->status != 0)
        return err;
    if (reply->version >= FSB_STREAM_VERSION_JOIN)
        err = read_within_timeout(fd, token, FSB_SESSION_TOKEN_SIZE);
    return err ? err : read_terms(fd, reply, terms);
}

static void log_read_error(const struct fsb_address *addr, int err)
{
    if (err == -EPIPE)
        log_error("%s closed the connection during the handshake", addr->text);
    else if (err == -ETIMEDOUT)
        log_error("%s did not answer the handshake within %d s", addr->text,
                  HANDSHAKE_TIMEOUT_MS / 1000);
    else if (err == -EPROTO)
        log_error("%s is not an fsbridge host (bad HELLO reply)", addr->text);
    else
        log_error("%s: reading the HELLO reply: %s", addr->text, strerror(-err));
}

static void log_refusal(const struct fsb_hello_reply *reply, const char *export_name)
{
    if (reply->status == ENOENT && *export_name)
        log_error("export '%s' not found on host", export_name);
    else if (reply->status == ENOENT)
        log_error("host has no default export");
    else if (reply->status == EPROTO)
        log_error("host refused the session: unsupported protocol version or byte order");
    else if (reply->status == ESTALE)
        log_error("host refused to join the session: it has ended, or has not answered INIT yet");
    else
        log_error("host refused the session: %s", strerror((int)reply->status));
}

/* Checks a reply with status 0.  The host speaks only its native byte order
 * and the smaller of both versions; anything else is a broken host. */
static int check_reply(const struct fsb_address *addr, const struct fsb_hello_reply *reply)
{
    if (reply->version == 0 || reply->version > FSB_STREAM_VERSION) {
        log_error("%s answered with stream protocol version %u (this program speaks %u)",
                  addr->text, reply->version, FSB_STREAM_VERSION);
        return -1;
    }
    /* The protocol allows 4096, but the kernel reads requests only into
     * FUSE_MIN_READ_BUFFER bytes, and a one-page READ reply or WRITE
     * request plus headers is more than 4096: such a session cannot work. */
    if (reply->max_frame < FUSE_MIN_READ_BUFFER) {
        log_error("%s announced frames of %u bytes: too small for FUSE (minimum %u)",
                  addr->text, reply->max_frame, FUSE_MIN_READ_BUFFER);
        return -1;
    }
    return 0;
}

/* A join's reply must name the same session: same token, frames, terms. */
static int check_join(const struct fsb_address *addr, const struct fsb_session_ticket *t,
                      const struct fsb_hello_reply *reply, const uint8_t *token,
                      const struct fsb_session_terms *terms)
{
    if (reply->version != t->version || reply->max_frame != t->max_frame ||
        memcmp(token, t->token, FSB_SESSION_TOKEN_SIZE) != 0 ||
        memcmp(terms, &t->terms, sizeof(*terms)) != 0) {
        log_error("%s answered a join with another session (version %u, frames %u)",
                  addr->text, reply->version, reply->max_frame);
        return -1;
    }
    return 0;
}

/* The HELLO exchange on a connected FD: opens a session and fills *T, or
 * (JOIN) joins the session of *T.  Returns 0 or -1 (logged). */
static int hello(int fd, const struct fsb_address *addr, const char *export_name,
                 struct fsb_session_ticket *t, bool join, int cpu)
{
    struct fsb_hello_reply reply;
    uint8_t token[FSB_SESSION_TOKEN_SIZE];
    struct fsb_session_terms terms;
    int err = wait_writable(fd, addr);
    if (err == -ETIMEDOUT) {
        log_error("%s: no host on the other side within %d s", addr->text,
                  HANDSHAKE_TIMEOUT_MS / 1000);
        return -1;
    }
    if (!err)
        err = send_hello(fd, export_name, join ? t : NULL, cpu);
    if (err) {
        log_error("%s: sending HELLO: %s", addr->text, strerror(-err));
        return -1;
    }
    err = read_hello_reply(fd, &reply, token, &terms);
    if (err) {
        log_read_error(addr, err);
        return -1;
    }
    if (reply.status != 0) {
        log_refusal(&reply, export_name);
        return -1;
    }
    if (check_reply(addr, &reply) < 0)
        return -1;
    if (join)
        return check_join(addr, t, &reply, token, &terms);
    /* The host should answer the minimum of both; never trust it to. */
    *t = (struct fsb_session_ticket){
        .joinable = reply.version >= FSB_STREAM_VERSION_JOIN,
        .version = reply.version,
        .max_frame = reply.max_frame < FSB_DEFAULT_MAX_FRAME ? reply.max_frame
                                                             : FSB_DEFAULT_MAX_FRAME,
        .terms = terms,
    };
    memcpy(t->token, token, sizeof(token));
    return 0;
}

/* Connects and runs the handshake.  Returns the fd or -1 (logged). */
static int connect_and_hello(const struct fsb_address *addr, const char *export_name,
                             struct fsb_session_ticket *t, bool join, int cpu)
{
    int fd = fsb_address_connect(addr);
    if (fd < 0) {
        log_connect_error(addr, fd, "fsbridged");
        return -1;
    }
    if (hello(fd, addr, export_name, t, join, cpu) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int handshake_open(const struct fsb_address *addr, const char *export_name,
                   struct fsb_session_ticket *ticket)
{
    int fd = connect_and_hello(addr, export_name, ticket, false, -1);
    if (fd >= 0)
        log_debug("session open on %s: protocol %u, frames up to %u bytes, terms %#x/%#x",
                  addr->text, ticket->version, ticket->max_frame, ticket->terms.features,
                  ticket->terms.open_flags);
    return fd;
}

int handshake_connect(const struct fsb_address *addr, const char *export_name,
                      uint32_t *max_frame)
{
    struct fsb_session_ticket t;
    int fd = handshake_open(addr, export_name, &t);
    if (fd >= 0)
        *max_frame = t.max_frame;
    return fd;
}

int handshake_join(const struct fsb_address *addr, const char *export_name,
                   const struct fsb_session_ticket *ticket, int cpu)
{
    if (!ticket->joinable) {
        log_error("%s: the host speaks protocol %u: a session has one connection",
                  addr->text, ticket->version);
        return -1;
    }
    struct fsb_session_ticket t = *ticket;
    return connect_and_hello(addr, export_name, &t, true, cpu);
}
