/*
 * fuse_uring_abi.h - the FUSE-over-io_uring structs of the kernel's UAPI
 * (include/uapi/linux/fuse.h, protocol 7.42, Linux 6.14), defined here
 * because Debian 12's <linux/fuse.h> (7.38) predates them.  Layouts are
 * fixed by the kernel ABI: do not change them.
 *
 * Each ring entry the daemon registers is two buffers (an iovec pair in the
 * REGISTER command): a struct fuse_uring_req_header and a payload buffer.
 * For a request the kernel fills in_out with the fuse_in_header, op_in with
 * the opcode's fixed argument (e.g. fuse_write_in; nothing for opcodes
 * without one) and the payload with the rest (names, write data), and says
 * in ring_ent_in_out how long the payload is.  For the reply the daemon
 * puts the fuse_out_header in in_out and everything after it in the payload.
 */
#ifndef FSB_MOUNT_FUSE_URING_ABI_H
#define FSB_MOUNT_FUSE_URING_ABI_H

#include <stdint.h>

#ifndef FUSE_URING_IN_OUT_HEADER_SZ

#define FUSE_URING_IN_OUT_HEADER_SZ 128
#define FUSE_URING_OP_IN_OUT_SZ 128

struct fuse_uring_ent_in_out {
    uint64_t flags;
    uint64_t commit_id;  /* the request's unique: names it in the commit */
    uint32_t payload_sz; /* bytes used in the payload buffer */
    uint32_t padding;
    uint64_t reserved;
};

struct fuse_uring_req_header {
    char in_out[FUSE_URING_IN_OUT_HEADER_SZ]; /* fuse_in_header / fuse_out_header */
    char op_in[FUSE_URING_OP_IN_OUT_SZ];      /* the opcode's fixed argument */
    struct fuse_uring_ent_in_out ring_ent_in_out;
};

enum fuse_uring_cmd {
    FUSE_IO_URING_CMD_INVALID = 0,
    FUSE_IO_URING_CMD_REGISTER = 1,         /* hand the kernel an entry */
    FUSE_IO_URING_CMD_COMMIT_AND_FETCH = 2, /* reply, and take the next request */
};

/* In the 80-byte command area of a 128-byte SQE. */
struct fuse_uring_cmd_req {
    uint64_t flags;
    uint64_t commit_id;
    uint16_t qid; /* the queue: the CPU it serves */
    uint8_t padding[6];
};

#endif

_Static_assert(sizeof(struct fuse_uring_req_header) == 288, "kernel ABI");
_Static_assert(sizeof(struct fuse_uring_cmd_req) == 24, "kernel ABI");

#endif
