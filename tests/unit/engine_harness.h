/*
 * engine_harness.h - runs FUSE requests built in memory through the real
 * engine and passthrough backend over a scratch directory.  Shared by the
 * unit tests and the fuzz targets.
 */
#ifndef FSB_ENGINE_HARNESS_H
#define FSB_ENGINE_HARNESS_H

#include "engine/fuse_engine.h"

#include <stddef.h>
#include <stdint.h>

#define HARNESS_FRAME (1024 * 1024 + 4096)

struct harness {
    struct fsb_export export;
    struct fsb_session *session;
    char dir[64];
    uint8_t *reply;
    size_t reply_len;   /* 0: no reply */
    uint64_t next_unique;
};

/* Creates a scratch export and a session on it.  Returns 0 or -errno. */
int harness_open(struct harness *h, enum fsb_cache_mode mode);
void harness_close(struct harness *h);

/* Runs one raw request (its bytes as they would arrive). */
void harness_run(struct harness *h, const void *req, size_t len);

/* Builds a request: header (len filled in), then ARG, then the optional
 * NUL-terminated strings S1 and S2.  Returns its length. */
size_t harness_build(struct harness *h, uint8_t *buf, uint32_t opcode, uint64_t nodeid,
                     const void *arg, size_t arglen, const char *s1, const char *s2);

/* Sends FUSE_INIT with MINOR; returns the reply's error field. */
int harness_init(struct harness *h, uint32_t minor);
/* The same INIT offering FLAGS as well. */
int harness_init_offer(struct harness *h, uint32_t minor, uint32_t flags);

/* The last reply's error field (1 when there was no reply). */
int harness_error(const struct harness *h);

/* The last reply's payload. */
const void *harness_payload(const struct harness *h);

#endif
