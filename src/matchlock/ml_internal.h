/*
 * ml_internal.h - the matchlock frontend's connection state, shared by
 * ml_server.c (the frame loop), ml_conn.c (backends, handles, resolving
 * paths) and ml_ops.c (one handler per opcode).
 *
 * A connection owns one backend instance per export it has used (created
 * on first use, like a native session's), a table of the handles it
 * opened, and nothing else: no path is remembered between requests,
 * because another connection or a host process may rename any directory
 * at any time, and a remembered path would then resolve to the wrong
 * file.  Each request resolves its path from the export root, one
 * component per backend lookup, and forgets those lookups when done.
 */
#ifndef FSB_ML_INTERNAL_H
#define FSB_ML_INTERNAL_H

#include "backend/backend.h"
#include "engine/session.h"
#include "matchlock/ml_codec.h"
#include "matchlock/ml_paths.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

enum ml_handle_kind {
    ML_HANDLE_FREE,
    ML_HANDLE_FILE,      /* a backend open file */
    ML_HANDLE_DIR,       /* a backend open directory (matchlock opens them) */
    ML_HANDLE_SYNTHETIC, /* a synthesized directory: nothing on the host */
};

struct ml_handle {
    enum ml_handle_kind kind;
    uint32_t generation; /* bumped when the slot is reused: stale fhs fail */
    unsigned export;
    uint64_t backend_fh;
    uint64_t nodeid;     /* held with one lookup while open */
};

struct ml_conn {
    int fd;
    unsigned id;
    const struct fsb_export *exports;
    unsigned nexports;
    struct ml_exports *map;
    struct fsb_backend **backends; /* per export, NULL until first used */
    struct fsb_guest *guest;       /* whose budgets the backends count on */
    unsigned max_handles;
    struct ml_handle *handles;
    unsigned nhandles, handle_cap, open_handles;
    uint8_t *read_buf;             /* Read payloads (ML_DATA_MAX) */
};

/* An object resolved in an export: one lookup held unless it is the root. */
struct ml_node {
    struct fsb_backend *be;
    unsigned export;
    uint64_t nodeid;
    bool held;
    struct stat attr;
};

/* One request being answered. */
struct ml_call {
    struct ml_conn *conn;
    const struct ml_request *req;
    struct fsb_ctx ctx;
    struct ml_response *resp;
    /* Readdir: the encoded entries (freed by the caller after sending) */
    uint8_t *entries;
    size_t entries_cap;
};

/* ml_conn.c */
/* VISIBLE: the exports this client may reach (ml_exports_new). */
int ml_conn_init(struct ml_conn *c, int fd, unsigned id, const struct fsb_export *exports,
                 unsigned nexports, uint64_t visible);
void ml_conn_destroy(struct ml_conn *c);
/* The connection's backend instance for EXPORT, made on first use; NULL
 * with *ERR set when it cannot be made. */
struct fsb_backend *ml_backend(struct ml_conn *c, unsigned export, int *err);

/* Resolves the first LEN bytes of REL (a path below the root of EXPORT). */
int ml_walk(struct ml_call *call, unsigned export, const char *rel, size_t len,
            struct ml_node *out);
/* The same, making missing directories with *MKDIR_MODE (MkdirAll). */
int ml_walk_mkdir(struct ml_call *call, unsigned export, const char *rel, size_t len,
                  const mode_t *mkdir_mode, struct ml_node *out);
/* Resolves an ML_PLACE_EXPORT location. */
int ml_resolve(struct ml_call *call, const struct ml_location *loc, struct ml_node *out);
/* Resolves the parent directory of an ML_PLACE_EXPORT location below its
 * export root; *name is its last component. */
int ml_resolve_parent(struct ml_call *call, const struct ml_location *loc,
                      struct ml_node *out, const char **name);
void ml_node_put(struct ml_node *n);

int64_t ml_handle_add(struct ml_conn *c, enum ml_handle_kind kind, unsigned export,
                      uint64_t backend_fh, uint64_t nodeid);
/* The open handle FH, or NULL. */
struct ml_handle *ml_handle_get(struct ml_conn *c, uint64_t fh);
/* Closes the handle in the backend and frees the slot. */
void ml_handle_close(struct ml_conn *c, struct ml_handle *h);

/* Attributes as matchlock's `stat`, with fsbridge's additions. */
void ml_stat_from(struct ml_stat *out, const struct stat *st);
/* What a synthesized directory looks like. */
void ml_stat_synthetic(struct ml_stat *out, const char *clean_path);
/* matchlock's inode numbers: FNV-1a of (dev, ino), or of the path. */
uint64_t ml_ino_of(dev_t dev, ino_t ino);
uint64_t ml_ino_of_path(const char *clean_path, bool is_dir);

/* ml_ops.c: answers call->req into call->resp (err included). */
void ml_dispatch(struct ml_call *call);

#endif
