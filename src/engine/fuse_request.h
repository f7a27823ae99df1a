/*
 * fuse_request.h - one request being processed, and the argument readers
 * and reply writers the opcode handlers (fuse_ops.c) use.  Private to the
 * engine.
 */
#ifndef FSB_FUSE_REQUEST_H
#define FSB_FUSE_REQUEST_H

#include "engine/fuse_engine.h"
#include "engine/iov_cursor.h"

/* 7.38 parts missing from Debian 12's <linux/fuse.h>; values from upstream. */
#ifndef FUSE_CREATE_SUPP_GROUP
#define FUSE_CREATE_SUPP_GROUP (1ULL << 34)
#endif
#define FSB_FUSE_EXT_GROUPS 32 /* enum fuse_ext_type: struct fuse_supp_groups */

struct fsb_request {
    struct fsb_session *s;
    struct fsb_backend *be;
    struct fuse_in_header in;
    struct fsb_ctx ctx;
    struct iov_cursor args;  /* after the header, up to header len */
    struct iov_cursor out;   /* after the reply header */
    size_t out_len;          /* payload bytes written */
    bool may_wait;           /* a SETLKW may block (see fsb_engine_process_no_wait) */
    struct fsb_reply_pipe *lend; /* NULL, or where READ data may go */
    uint64_t host_changes;   /* the session's count when the request came */
    uint64_t new_dir;        /* RENAME, RENAME2: the second directory changed */
};

/* Copies the opcode's fixed argument struct; false if the request is
 * shorter. */
static inline bool req_arg(struct fsb_request *r, void *dst, size_t len)
{
    return iov_cursor_read(&r->args, dst, len);
}

/* Reads a NUL-terminated name of at most NAME_MAX bytes that is a single
 * path component ("." and ".." only with ALLOW_DOTS).  Returns 0 or
 * -EINVAL / -ENAMETOOLONG. */
int req_name(struct fsb_request *r, char name[NAME_MAX + 1], bool allow_dots);

/* Reads a NUL-terminated string of at most MAX-1 bytes (symlink targets,
 * xattr names). */
int req_string(struct fsb_request *r, char *buf, size_t max);

/* True if every argument byte was consumed: trailing garbage is an error. */
static inline bool req_args_done(const struct fsb_request *r)
{
    return r->args.left == 0;
}

/* Appends LEN bytes to the reply; -ERANGE if there is no room. */
int reply_put(struct fsb_request *r, const void *data, size_t len);

/* Opcode handlers return 0 (reply = what they put) or -errno. */
typedef int (*fsb_op_fn)(struct fsb_request *r);

enum {
    OP_NO_REPLY = 1 << 0, /* FORGET & co. */
    OP_MODIFIES = 1 << 1, /* refused with EROFS on read-only exports */
    OP_XATTR = 1 << 2,    /* ENOSYS when the export has xattrs off */
    OP_DIR_CHANGE = 1 << 3, /* changes the entries of the node's directory */
    OP_DIR_LISTING = 1 << 4, /* lists the node's directory: may move its atime */
};

/* After a successful OP_DIR_CHANGE or OP_DIR_LISTING request in a session
 * with attr_notes: the directories' attributes, as notes for the
 * transport (the guest kernel forgets a directory's atime after each
 * listing, fs/fuse/readdir.c, and asks again at the next stat). */
void fsb_note_changed_dirs(struct fsb_request *r);

struct fsb_op {
    fsb_op_fn fn;
    const char *name;
    unsigned flags;
};

/* The table of fuse_ops.c, indexed by opcode; NULL fn: ENOSYS. */
const struct fsb_op *fsb_op_lookup(uint32_t opcode);

#endif
