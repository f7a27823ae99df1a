/*
 * fuse_engine.c - request framing, validation and dispatch; the argument
 * and reply helpers of fuse_request.h.  The opcode handlers are in
 * fuse_ops.c.
 */
#include "engine/fuse_request.h"
#include "common/log.h"

#include <errno.h>
#include <string.h>

int req_string(struct fsb_request *r, char *buf, size_t max)
{
    for (size_t i = 0; i < max; i++) {
        if (!iov_cursor_read(&r->args, &buf[i], 1))
            return -EINVAL; /* not NUL-terminated */
        if (buf[i] == 0)
            return 0;
    }
    return -ENAMETOOLONG;
}

int req_name(struct fsb_request *r, char name[NAME_MAX + 1], bool allow_dots)
{
    int err = req_string(r, name, NAME_MAX + 1);
    if (err)
        return err;
    if (name[0] == 0 || strchr(name, '/'))
        return -EINVAL;
    if (!allow_dots && (strcmp(name, ".") == 0 || strcmp(name, "..") == 0))
        return -EINVAL;
    return 0;
}

int reply_put(struct fsb_request *r, const void *data, size_t len)
{
    if (!iov_cursor_write(&r->out, data, len))
        return -ERANGE;
    r->out_len += len;
    return 0;
}

static size_t write_reply_header(const struct iovec *out, int out_cnt, uint64_t unique,
                                 int error, size_t payload)
{
    struct fuse_out_header oh = {
        .len = (uint32_t)(sizeof(oh) + payload),
        .error = error,
        .unique = unique,
    };
    struct iov_cursor c;
    iov_cursor_init(&c, out, out_cnt);
    if (!iov_cursor_write(&c, &oh, sizeof(oh)))
        return 0; /* no room even for a header: the transport's bug */
    return oh.len;
}

/* Checks what every request must satisfy before its opcode is looked at.
 * Returns 0 or the errno to answer with. */
static int check_request(const struct fsb_session *s, const struct fuse_in_header *in,
                         size_t in_len)
{
    if (in->len != in_len || in->len > s->max_frame)
        return -EINVAL;
    if ((size_t)in->total_extlen * 8 > in->len - sizeof(*in))
        return -EINVAL;
    if (!s->initialized && in->opcode != FUSE_INIT)
        return -EIO;
    return 0;
}

/* One FUSE_EXT_GROUPS extension (struct fuse_supp_groups: a count, then
 * the gids) of BODY bytes.  The kernel sends one group: the parent's. */
static int read_supp_groups(struct iov_cursor *ext, size_t body, struct fsb_ctx *ctx)
{
    uint32_t nr_groups, gid;
    if (body < 8 || !iov_cursor_read(ext, &nr_groups, 4) || nr_groups != 1 ||
        !iov_cursor_read(ext, &gid, 4))
        return -EINVAL;
    ctx->has_create_gid = true;
    ctx->create_gid = gid;
    return iov_cursor_skip(ext, body - 8) ? 0 : -EINVAL;
}

/*
 * Request extensions (7.38): total_extlen * 8 bytes after the opcode's
 * arguments, each a fuse_ext_header (its size, a multiple of 8, counts the
 * header) and a body.  Supplementary groups are read when negotiated
 * (FUSE_CREATE_SUPP_GROUP); anything else (security contexts, which we do
 * not negotiate) is skipped.  A size that does not tile the area: EINVAL.
 */
static int read_extensions(struct fsb_request *r, size_t extlen)
{
    struct iov_cursor ext = r->args;
    iov_cursor_skip(&ext, r->args.left - extlen);
    while (ext.left > 0) {
        struct fuse_ext_header xh;
        if (!iov_cursor_read(&ext, &xh, sizeof(xh)) || xh.size < sizeof(xh) || xh.size % 8 ||
            xh.size - sizeof(xh) > ext.left)
            return -EINVAL;
        size_t body = xh.size - sizeof(xh);
        int err = xh.type == FSB_FUSE_EXT_GROUPS && (r->s->flags & FUSE_CREATE_SUPP_GROUP)
                      ? read_supp_groups(&ext, body, &r->ctx)
                      : (iov_cursor_skip(&ext, body) ? 0 : -EINVAL);
        if (err)
            return err;
    }
    iov_cursor_limit(&r->args, r->args.left - extlen);
    return 0;
}

static int dispatch(struct fsb_request *r, const struct fsb_op *op)
{
    if (!op->fn || ((op->flags & OP_XATTR) && r->s->export->no_xattr))
        return -ENOSYS; /* the kernel remembers and stops asking */
    if ((op->flags & OP_MODIFIES) && r->s->export->readonly)
        return -EROFS;
    return op->fn(r);
}

void fsb_inval_attrs_msg(uint64_t nodeid, unsigned char msg[FSB_INVAL_ATTRS_MSG_SIZE])
{
    struct fuse_out_header h = { .len = FSB_INVAL_ATTRS_MSG_SIZE,
                                 .error = FUSE_NOTIFY_INVAL_INODE };
    struct fuse_notify_inval_inode_out a = { .ino = nodeid, .off = -1, .len = 0 };
    memcpy(msg, &h, sizeof(h));
    memcpy(msg + sizeof(h), &a, sizeof(a));
}

size_t fsb_engine_process_lent(struct fsb_session *s, const struct iovec *in, int in_cnt,
                               const struct iovec *out, int out_cnt, bool may_wait,
                               struct fsb_reply_pipe *lend)
{
    struct fsb_request r = { .s = s, .be = s->backend, .may_wait = may_wait, .lend = lend };
    if (lend) {
        lend->pipe = NULL;
        lend->held = 0;
        lend->stale_attrs = 0;
        lend->nnotes = 0;
        lend->has_empty_dir = false;
    }
    iov_cursor_init(&r.args, in, in_cnt);
    size_t in_len = r.args.left;
    if (!iov_cursor_read(&r.args, &r.in, sizeof(r.in))) {
        log_warn("request of %zu bytes is shorter than a FUSE header", in_len);
        return 0;
    }
    const struct fsb_op *op = fsb_op_lookup(r.in.opcode);
    int err = check_request(s, &r.in, in_len);
    if (!err) {
        r.ctx = (struct fsb_ctx){ .uid = r.in.uid, .gid = r.in.gid, .pid = r.in.pid };
        r.host_changes = atomic_load_explicit(&s->host_changes, memory_order_acquire);
        log_debug("%s/%u (unique %llu, node %llu)", op->name, r.in.opcode,
                  (unsigned long long)r.in.unique, (unsigned long long)r.in.nodeid);
        iov_cursor_init(&r.out, out, out_cnt);
        iov_cursor_skip(&r.out, sizeof(struct fuse_out_header));
        err = read_extensions(&r, (size_t)r.in.total_extlen * 8);
        if (!err)
            err = dispatch(&r, op);
        if (!err && lend && s->attr_notes && (op->flags & (OP_DIR_CHANGE | OP_DIR_LISTING)))
            fsb_note_changed_dirs(&r);
    } else {
        log_debug("request %llu (opcode %u) refused: %s", (unsigned long long)r.in.unique,
                  r.in.opcode, strerror(-err));
    }
    if (op->flags & OP_NO_REPLY)
        return 0;
    if (err < 0)
        log_debug("%s/%u (unique %llu, node %llu): %s", op->name, r.in.opcode,
                  (unsigned long long)r.in.unique, (unsigned long long)r.in.nodeid,
                  strerror(-err));
    if (err > 0)
        err = -EIO; /* handlers return 0 or -errno; anything else is a bug */
    return write_reply_header(out, out_cnt, r.in.unique, err, err ? 0 : r.out_len);
}

size_t fsb_engine_process(struct fsb_session *s, const struct iovec *in, int in_cnt,
                          const struct iovec *out, int out_cnt)
{
    return fsb_engine_process_lent(s, in, in_cnt, out, out_cnt, true, NULL);
}

size_t fsb_engine_process_no_wait(struct fsb_session *s, const struct iovec *in, int in_cnt,
                                  const struct iovec *out, int out_cnt)
{
    return fsb_engine_process_lent(s, in, in_cnt, out, out_cnt, false, NULL);
}
