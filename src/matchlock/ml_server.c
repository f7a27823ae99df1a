/*
 * ml_server.c - see ml_server.h.  The frame loop: read a length and a
 * body, decode, dispatch (ml_ops.c), encode, send.
 *
 * Frame lengths are checked before anything is allocated or read: a
 * length over ML_REQUEST_MAX closes the connection with one log line
 * (matchlock's own server would allocate whatever the length says).  A
 * body that does not decode is answered EINVAL (ENOSYS when its opcode is
 * one we do not know) and the connection goes on: the framing is intact,
 * so the next request can still be understood.
 */
#include "matchlock/ml_server.h"
#include "common/fdio.h"
#include "common/log.h"
#include "matchlock/ml_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Response buffer kept between requests: a full Read.  Larger ones (long
 * directory listings) are freed after use. */
#define OUT_KEEP (ML_DATA_MAX + 4096)

struct frame_io {
    struct ml_conn *conn;
    uint8_t header[ML_FRAME_HEADER_SIZE];
    size_t have;       /* header bytes already read */
    uint8_t *body;     /* ML_REQUEST_MAX bytes */
    uint8_t *out;
    size_t out_cap;
    const struct timespec *first_by; /* the first frame's deadline, then NULL */
};

static void log_read_error(unsigned id, int err, const char *what)
{
    if (err == -ETIMEDOUT)
        log_warn("session %u: matchlock: no complete first frame within the HELLO's time "
                 "limit: closing", id);
    else
        log_warn("session %u: matchlock: %s: %s", id, what,
                 err == -EPIPE ? "connection closed mid-frame" : strerror(-err));
}

/* Reads one request body, by io->first_by for the first one.  Returns its
 * length, or -1 at the end of the connection (logged unless the peer just
 * closed between frames). */
static ssize_t read_request(struct frame_io *io)
{
    unsigned id = io->conn->id;
    int err = fsb_read_full_by(io->conn->fd, io->header + io->have,
                               ML_FRAME_HEADER_SIZE - io->have, io->first_by);
    bool between_frames = io->have == 0;
    io->have = 0;
    if (err) {
        if (!(err == -EPIPE && between_frames) && err != -ECONNRESET)
            log_read_error(id, err, "reading a frame");
        return -1;
    }
    uint32_t len = ml_frame_length(io->header);
    if (len > ML_REQUEST_MAX) {
        log_warn("session %u: matchlock frame of %u bytes over the limit of %u: closing", id,
                 len, (unsigned)ML_REQUEST_MAX);
        return -1;
    }
    err = fsb_read_full_by(io->conn->fd, io->body, len, io->first_by);
    if (err) {
        log_read_error(id, err, "truncated frame, closing");
        return -1;
    }
    io->first_by = NULL;
    return len;
}

static int send_response(struct frame_io *io, const struct ml_response *resp)
{
    size_t need = ml_response_size_bound(resp);
    if (need > io->out_cap) {
        uint8_t *p = realloc(io->out, need);
        if (!p)
            return -ENOMEM;
        io->out = p;
        io->out_cap = need;
    }
    ssize_t n = ml_encode_response(resp, io->out, io->out_cap);
    int err = n < 0 ? (int)n : fsb_write_full(io->conn->fd, io->out, (size_t)n);
    if (io->out_cap > OUT_KEEP) {
        free(io->out);
        io->out = NULL;
        io->out_cap = 0;
    }
    return err;
}

static void log_request(unsigned id, const struct ml_request *req, const struct ml_response *r)
{
    if (fsb_log_level < FSB_LOG_DEBUG)
        return;
    char unknown[16];
    const char *name = ml_op_name(req->op);
    if (!name) {
        snprintf(unknown, sizeof(unknown), "op %u", req->op);
        name = unknown;
    }
    if (req->path[0])
        log_debug("session %u: matchlock %s %s: %s", id, name, req->path,
                  r->err ? strerror(-r->err) : "ok");
    else
        log_debug("session %u: matchlock %s fh %llu: %s", id, name,
                  (unsigned long long)req->fh, r->err ? strerror(-r->err) : "ok");
}

/* Answers one request body; returns false when the connection must end. */
static bool answer(struct frame_io *io, struct ml_request *req, size_t len)
{
    struct ml_response resp = { 0 };
    struct ml_call call = { .conn = io->conn, .req = req, .resp = &resp };
    const char *why = NULL;
    uint64_t op;
    if (ml_decode_request(io->body, len, req, &why) < 0) {
        bool unknown = ml_request_opcode(io->body, len, &op) == 0 && op >= ML_OP_COUNT;
        resp.err = unknown ? -ENOSYS : -EINVAL;
        log_debug("session %u: matchlock: undecodable request (%s): %s", io->conn->id, why,
                  unknown ? "unknown op, ENOSYS" : "EINVAL");
    } else {
        ml_dispatch(&call);
        log_request(io->conn->id, req, &resp);
    }
    int err = send_response(io, &resp);
    free(call.entries);
    if (err && err != -EPIPE && err != -ECONNRESET)
        log_warn("session %u: matchlock: sending a response: %s", io->conn->id, strerror(-err));
    return err == 0;
}

void ml_serve_connection(int fd, unsigned id, const struct fsb_export *exports,
                         unsigned nexports, uint64_t visible, struct fsb_guest *guest,
                         const uint8_t *already, size_t already_len,
                         const struct timespec *first_by)
{
    struct ml_conn conn;
    struct frame_io io = { .conn = &conn, .first_by = first_by };
    struct ml_request *req = malloc(sizeof(*req));
    io.body = malloc(ML_REQUEST_MAX);
    if (!req || !io.body || ml_conn_init(&conn, fd, id, exports, nexports, visible) < 0) {
        log_error("session %u: matchlock: out of memory", id);
        free(req);
        free(io.body);
        return;
    }
    conn.guest = guest;
    log_info("session %u: matchlock client", id);
    if (already_len > ML_FRAME_HEADER_SIZE)
        already_len = ML_FRAME_HEADER_SIZE;
    memcpy(io.header, already, already_len);
    io.have = already_len;
    ssize_t len;
    while ((len = read_request(&io)) >= 0 && answer(&io, req, (size_t)len))
        ;
    ml_conn_destroy(&conn);
    free(io.out);
    free(io.body);
    free(req);
    log_info("session %u: ended", id);
}
