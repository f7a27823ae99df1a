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

#include <linux/fuse.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/uio.h>

/* Oldest kernel protocol we serve: Linux 4.20 (7.27).  Debian 12's kernel
 * sends 7.37, current ones 7.4x; older minors only shorten structs that we
 * read by size (fuse_init_in, fuse_init_out). */
#define FSB_FUSE_MIN_MINOR 27

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

/* Requests that never block and have no reply: a transport may run them at
 * once instead of queueing them behind others (virtio-fs' hiprio queue). */
static inline bool fsb_engine_is_urgent(uint32_t opcode)
{
    return opcode == FUSE_FORGET || opcode == FUSE_BATCH_FORGET || opcode == FUSE_INTERRUPT;
}

#endif
