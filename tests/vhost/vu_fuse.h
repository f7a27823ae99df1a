/*
 * vu_fuse.h - FUSE requests over the test frontend's virtqueues, the way
 * the guest's virtio-fs driver sends them: one chain per request, the
 * device-readable part (fuse_in_header, arguments, write data) followed by
 * the device-writable part (fuse_out_header, reply).  Structs and
 * constants are <linux/fuse.h>'s.
 *
 * Requests live in slots of guest memory (region 1, away from the rings);
 * several may be in flight on several queues and complete in any order.
 *
 * Return values of the calls: 0, or the negative errno the reply carries;
 * VU_FUSE_BROKEN when no well-formed reply came (the backend closed, timed
 * out or answered garbage: fs->fe->error says which).
 */
#ifndef VU_FUSE_H
#define VU_FUSE_H

#include "vu_frontend.h"

#include <linux/fuse.h>
#include <stdbool.h>
#include <stdint.h>

#define VU_FUSE_BROKEN (-100000)
#define VU_HIPRIO 0
#define VU_REQUEST_QUEUE 1

struct vu_fuse_req {
    unsigned ring;
    uint32_t opcode;
    uint64_t unique;
    uint64_t in_gpa, out_gpa;
    uint8_t *in, *out;
    uint32_t in_len, out_len;   /* bytes offered this time */
    bool busy, done;
    uint32_t used_len;
};

struct vu_fuse {
    struct vu_frontend *fe;
    uint64_t next_unique;
    unsigned nreqs;
    struct vu_fuse_req *reqs;
    uint32_t in_cap, out_cap;   /* per slot */
    bool split_pages;           /* payloads as 4 KiB descriptors, like page lists */
    struct fuse_init_out init;  /* as the backend answered */
    uint32_t init_len;
    unsigned foreign_used;      /* used entries of chains not ours (raw ones) */
};

/* NREQS slots of IN_CAP request and OUT_CAP reply bytes each. */
int vu_fuse_create(struct vu_fuse *fs, struct vu_frontend *fe, unsigned nreqs, uint32_t in_cap,
                   uint32_t out_cap);
void vu_fuse_destroy(struct vu_fuse *fs);

/* Builds and queues one request on RING (header + ARG + DATA; REPLY_CAP
 * writable bytes, 0 for none) and kicks.  NULL when no slot or ring room
 * is left, or the request does not fit (fe->error). */
struct vu_fuse_req *vu_fuse_submit(struct vu_fuse *fs, unsigned ring, uint32_t opcode,
                                   uint64_t nodeid, const void *arg, uint32_t arglen,
                                   const void *data, uint32_t datalen, uint32_t reply_cap);
/* Reads the used entries of RING, marking their requests done; returns
 * how many, or VU_FUSE_BROKEN for an entry we never queued.  Chains
 * published raw (their token is not a request slot) count in
 * foreign_used. */
int vu_fuse_harvest(struct vu_fuse *fs, unsigned ring);
/* Waits until REQ is done (TIMEOUT_MS); 0 or VU_FUSE_BROKEN. */
int vu_fuse_wait(struct vu_fuse *fs, struct vu_fuse_req *req, int timeout_ms);
/* Checks REQ's reply; returns its error (0 or -errno) and points BODY past
 * the fuse_out_header, or VU_FUSE_BROKEN for a malformed reply. */
int vu_fuse_reply(struct vu_fuse *fs, const struct vu_fuse_req *req, const uint8_t **body,
                  uint32_t *body_len);
void vu_fuse_put(struct vu_fuse_req *req);
/* Frees every slot: after the rings were reset, nothing is in flight. */
void vu_fuse_reset(struct vu_fuse *fs);

/* submit + wait + reply; copies at most REPLY_SIZE body bytes to REPLY. */
int vu_fuse_call(struct vu_fuse *fs, unsigned ring, uint32_t opcode, uint64_t nodeid,
                 const void *arg, uint32_t arglen, const void *data, uint32_t datalen,
                 void *reply, uint32_t reply_size, uint32_t *reply_len);

/* ---- operations (on the first request queue) --------------------------- */
int vu_fuse_init(struct vu_fuse *fs);
int vu_fuse_lookup(struct vu_fuse *fs, uint64_t parent, const char *name,
                   struct fuse_entry_out *e);
int vu_fuse_getattr(struct vu_fuse *fs, uint64_t nodeid, struct fuse_attr_out *a);
int vu_fuse_create_file(struct vu_fuse *fs, uint64_t parent, const char *name, uint32_t mode,
                        struct fuse_entry_out *e, uint64_t *fh);
int vu_fuse_open(struct vu_fuse *fs, uint64_t nodeid, uint32_t flags, uint64_t *fh);
int vu_fuse_release(struct vu_fuse *fs, uint64_t nodeid, uint64_t fh);
/* READ of SIZE bytes at OFFSET into BUF; *GOT bytes came. */
int vu_fuse_read(struct vu_fuse *fs, uint64_t nodeid, uint64_t fh, uint64_t offset,
                 uint32_t size, void *buf, uint32_t *got);
int vu_fuse_write(struct vu_fuse *fs, uint64_t nodeid, uint64_t fh, uint64_t offset,
                  const void *data, uint32_t size, uint32_t *written);
/* FORGET on the hiprio queue; 0 once its chain came back (length 0). */
int vu_fuse_forget(struct vu_fuse *fs, uint64_t nodeid, uint64_t nlookup);

#endif
