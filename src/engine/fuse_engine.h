/*
 * fuse_engine.h - the FUSE protocol engine: decode, validate, dispatch,
 * reply.
 *
 * This is the one place where guest bytes are parsed.  A transport hands it
 * one request as scatter-gather memory (fuse_in_header, arguments, write
 * payload) and room for the reply; the engine checks every length against
 * the opcode and the negotiated protocol minor, calls the session's backend
 * and writes the reply (fuse_out_header first).  Bad input gets an errno
 * reply; it never aborts.
 */
#ifndef FSB_FUSE_ENGINE_H
#define FSB_FUSE_ENGINE_H

#include "engine/session.h"
#include "transport/stream_hello.h"

#include <linux/fuse.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

/* Oldest kernel protocol we serve: Linux 4.20 (7.27).  Debian 12's kernel
 * sends 7.37, current ones 7.4x; older minors only shorten structs that we
 * read by size (fuse_init_in, fuse_init_out). */
#define FSB_FUSE_MIN_MINOR 27

/* The largest READ or WRITE payload a session negotiates. */
#define FSB_MAX_WRITE (1u << 20)

/*
 * Processes one request.  IN holds exactly one request (its header's len
 * must equal the bytes in IN); OUT receives the reply.  Returns the reply's
 * length, or 0 when the request has no reply (FORGET, BATCH_FORGET,
 * INTERRUPT, NOTIFY_REPLY).
 */
size_t fsb_engine_process(struct fsb_session *s, const struct iovec *in, int in_cnt,
                          const struct iovec *out, int out_cnt);

/*
 * The same, on a thread that must not block: a SETLKW whose lock is taken
 * fails with ENOLCK instead of waiting.  A transport runs a lock wait on a
 * thread of its own (the unlock that ends it may queue behind it
 * otherwise), up to a limit; beyond it, and for any request it did not
 * route as a lock wait (a guest may change shared memory after the
 * transport looked at the opcode), it uses this.
 */
size_t fsb_engine_process_no_wait(struct fsb_session *s, const struct iovec *in, int in_cnt,
                                  const struct iovec *out, int out_cnt);

/*
 * A transport that can send part of a reply from a pipe (the stream
 * server: host file -> pipe -> socket, splice(2), so the daemon copies no
 * READ data) lends one.  The engine asks for it only for a READ it has
 * validated, and only the data goes into the pipe: the reply's header is
 * in OUT as always, its len counting the data.  The transport sends the
 * first (length - held) bytes of OUT, then the HELD bytes in the pipe.
 */
#define FSB_MAX_ATTR_NOTES 2 /* per request (fsb_reply_pipe.notes) */
struct fsb_reply_pipe {
    /* An empty pipe with room for SIZE bytes of a file at OFFSET, or NULL
     * (the engine copies into OUT then). */
    struct fsb_pipe *(*take)(struct fsb_reply_pipe *rp, size_t size, off_t offset);
    void *arg;             /* the transport's */
    struct fsb_pipe *pipe; /* out: what take() gave, or NULL */
    size_t held;           /* out: reply bytes in it */
    /* out: a node whose attributes the guest now caches wrongly (0: none),
     * which a transport that can notify invalidates before it sends the
     * reply (fsb_inval_attrs_msg).  A SETXATTR of system.posix_acl_access
     * changes the mode on the host as a side effect; the kernel, without
     * FUSE_POSIX_ACL, keeps the old one for the attribute timeout. */
    uint64_t stale_attrs;
    /* out, in sessions with attr_notes: the directories whose entries the
     * request changed, with their attributes after it, which the
     * transport sends before the reply (stream_hello.h, FSB_NOTIFY_ATTRS):
     * the node's directory and a rename's new directory. */
    struct fsb_attr_note notes[FSB_MAX_ATTR_NOTES];
    unsigned nnotes;
    /* out, in sessions with empty_dir_notes: a MKDIR's new directory is
     * empty and watched (FSB_NOTIFY_EMPTY_DIR), sent before the reply */
    struct fsb_empty_dir_note empty_dir;
    bool has_empty_dir;
};

/* The FOPEN_* flags S answers a read-only OPEN of a file with; they
 * depend on the session's cache mode only (a stream session's terms tell
 * the guest's relay, stream_hello.h). */
uint32_t fsb_engine_file_open_flags(const struct fsb_session *s);

/* FUSE_NOTIFY_INVAL_INODE of NODEID's attributes only (offset -1: no
 * page is touched, so the kernel takes no lock a request in flight may
 * hold: safe to send from any thread, before or after any reply). */
#define FSB_INVAL_ATTRS_MSG_SIZE                                               \
    (sizeof(struct fuse_out_header) + sizeof(struct fuse_notify_inval_inode_out))
void fsb_inval_attrs_msg(uint64_t nodeid, unsigned char msg[FSB_INVAL_ATTRS_MSG_SIZE]);

/* fsb_engine_process (MAY_WAIT) or fsb_engine_process_no_wait, with LEND
 * (may be NULL) offered for READ data. */
size_t fsb_engine_process_lent(struct fsb_session *s, const struct iovec *in, int in_cnt,
                               const struct iovec *out, int out_cnt, bool may_wait,
                               struct fsb_reply_pipe *lend);

/* Requests that never block and have no reply: a transport may run them at
 * once instead of queueing them behind others (virtio-fs' hiprio queue). */
static inline bool fsb_engine_is_urgent(uint32_t opcode)
{
    return opcode == FUSE_FORGET || opcode == FUSE_BATCH_FORGET || opcode == FUSE_INTERRUPT;
}

#endif
