/*
 * hostile.h - the cases of vhost-hostile and what they share.
 *
 * Each case runs against a fresh backend process: the runner
 * (vhost_hostile.c) brings the connection to the case's stage, runs the
 * case, then checks that the backend survived: it still answers a good
 * request (on the same rings, or after a guest-reset style restart of
 * them), or it closed the connection and exited without a crash; guest
 * memory outside what the case allowed is unchanged; it exits once the
 * frontend is gone.
 *
 * hostile_rings.c holds the descriptor and ring cases, hostile_messages.c
 * the vhost-user message cases.
 */
#ifndef HOSTILE_H
#define HOSTILE_H

#include "vu_fuse.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* How far the runner brings the session before the case runs. */
enum stage {
    STAGE_CONNECTED,   /* socket connected, no message sent */
    STAGE_OWNED,       /* features negotiated, SET_OWNER sent */
    STAGE_STARTED,     /* memory table and rings set up, no FUSE_INIT */
    STAGE_RUNNING,     /* FUSE_INIT answered */
};

/* What a backend must still do after the case (--strict enforces it;
 * otherwise closing the connection cleanly is always acceptable). */
enum expect {
    EXPECT_SURVIVE,            /* anything but a crash, hang or stray write */
    EXPECT_SERVE_AFTER_RESET,  /* serves again once the rings are restarted */
    EXPECT_KEEP_SERVING,       /* serves on the same rings */
};

#define CASE_RETURNS (1u << 0)      /* strict: the bad chain comes back on the used ring */
#define CASE_ENDS_SESSION (1u << 1) /* the case closes the connection itself */
#define CASE_MEM_SLOTS (1u << 2)    /* needs CONFIGURE_MEM_SLOTS */
#define CASE_RESET_DEVICE (1u << 3) /* needs RESET_DEVICE */
#define CASE_NO_INDIRECT (1u << 4)  /* runs without negotiating INDIRECT_DESC */
#define CASE_INDIRECT (1u << 5)     /* needs INDIRECT_DESC */
#define CASE_HIPRIO (1u << 6)       /* the chain goes to queue 0 */

/* Case results. */
#define CASE_DONE 0
#define CASE_SKIP 1
#define CASE_FAILED (-1)

/* Where a raw descriptor points (see hostile_rings.c). */
enum where {
    AT_GOOD,         /* a well-formed GETATTR request (scratch) */
    AT_BADLEN,       /* a GETATTR whose header claims 4096 bytes (scratch) */
    AT_OUT,          /* 4 KiB for the reply (scratch) */
    AT_TABLE,        /* the indirect table (scratch) */
    AT_HOLE,         /* the first byte above region 1: no memory */
    AT_HIGH,         /* far above every region */
    AT_ZERO,         /* guest-physical 0, below every region */
    AT_WRAP,         /* 4 KiB below 2^64 */
    AT_DESC,         /* the request queue's descriptor table */
    AT_AVAIL,        /* its avail ring */
    AT_USED,         /* its used ring */
};

struct dspec {
    enum where at;
    int64_t offset;
    uint32_t len;
    uint16_t flags;  /* VRING_DESC_F_* */
    int next;        /* index in the same list; ABS(n) for the raw index n */
};
#define ABS(n) (1000000 + (n))

struct env;
struct hcase {
    const char *name;
    enum stage stage;
    enum expect expect;
    unsigned flags;
    int (*run)(struct env *e, const struct hcase *c);
    /* chain cases: the ring descriptors, the indirect table */
    const struct dspec *chain;
    unsigned nchain;
    const struct dspec *table;
    unsigned ntable;
    /* message cases */
    uint32_t request;
    int variant;
    const char *what;   /* one line for --list */
};

#define SCRATCH_SIZE (256u * 1024)

struct env {
    bool strict;
    int timeout_ms;
    int quick_ms;              /* for answers a backend may rightly never give */
    struct vu_frontend fe;
    struct vu_fuse fs;
    enum stage reached;
    uint64_t scratch_gpa;      /* SCRATCH_SIZE bytes in region 1 */
    uint8_t *scratch_copy;     /* its bytes before the case */
    uint8_t *writable_map;     /* 1 where the case let the backend write */
    int raw_token;             /* the token of raw chains */
    bool raw_sent, raw_returned;
    uint32_t raw_len;
    bool unanswered;           /* a need_reply message got no reply */
    uint64_t seed, rng;        /* random cases */
    char note[512];            /* what the case saw, for its line */
};

/* Appends to the case's note. */
void note(struct env *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Notes a failure of the case itself; returns CASE_FAILED. */
int case_fail(struct env *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int case_skip(struct env *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Sends one message as the case wants it (need_reply when REPLY_ACK is
 * negotiated) and notes the backend's answer.  Returns -ECONNRESET once
 * the backend closed the connection, else 0. */
int send_hostile(struct env *e, uint32_t request, uint32_t flags, const void *payload,
                 uint32_t size, const int *fds, unsigned nfds);
/* Reads what the backend answers for up to FIRST_MS; notes it. */
void drain_replies(struct env *e, int first_ms);

/* Sends a GETATTR whose request and reply buffers lie in REGION (after a
 * memory table change: does the backend use what it was told?). */
void probe_region(struct env *e, unsigned region);

/* Case tables. */
size_t hostile_ring_cases(const struct hcase **cases);
size_t hostile_message_cases(const struct hcase **cases);

#endif
