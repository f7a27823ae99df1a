/*
 * ml_paths.h - which export a matchlock guest path falls in.
 *
 * matchlock names every file by its absolute guest path (its guest sends
 * paths under its own mount point, e.g. /workspace/src/a.c).  Each export
 * has a guest path prefix: an export named "/workspace" is the prefix
 * itself, one named "src" is "/src".  A path belongs to the export with the
 * longest prefix that is a whole-component prefix of it; directories above
 * export points are synthesized (they exist, read-only, and list the export
 * points below them), also inside an outer export whose directory lacks
 * them; every other path is outside all exports.
 *
 * Paths are cleaned lexically first, as matchlock's Go server does with
 * filepath.Clean: empty and "." components vanish, ".." removes the
 * component before it and stops at "/".  This is safe because the host
 * never follows a symlink: a path is then resolved inside its export
 * component by component through the backend (see ml_conn.c).
 */
#ifndef FSB_ML_PATHS_H
#define FSB_ML_PATHS_H

#include "engine/session.h"
#include "matchlock/ml_codec.h"

#include <limits.h>
#include <stdint.h>

struct ml_exports;

enum ml_place {
    ML_PLACE_OUTSIDE,   /* in no export, above none */
    ML_PLACE_SYNTHETIC, /* a directory above export points */
    ML_PLACE_EXPORT,    /* in an export (its root included) */
};

struct ml_location {
    enum ml_place place;
    unsigned export;     /* ML_PLACE_EXPORT: index into the exports */
    char path[ML_PATH_SIZE]; /* the cleaned guest path */
    const char *rel;     /* ML_PLACE_EXPORT: the path below the export root,
                          * without a leading '/', "" for the root itself;
                          * points into path */
};

/* The prefix table of the exports of EXPORTS[0..N) whose bit is set in
 * VISIBLE (bit i: EXPORTS[i]; the others do not exist for this client), or
 * NULL (out of memory).  Locations keep the index into EXPORTS. */
struct ml_exports *ml_exports_new(const struct fsb_export *exports, unsigned n,
                                  uint64_t visible);
void ml_exports_free(struct ml_exports *ex);

/* The guest path prefix of an export name ("/workspace" or "/NAME"). */
void ml_export_prefix(const char *name, char out[ML_PATH_SIZE]);

/*
 * Cleans GUEST_PATH and finds its place.  Returns 0, or -EINVAL for a path
 * that is not absolute, -ENAMETOOLONG for a component over NAME_MAX, a
 * path over ML_PATH_MAX, or a path in an export whose part below the
 * export's prefix is over ML_BELOW_PREFIX_MAX (PATH_MAX - 1, as on a local
 * disk: the prefix does not count).
 */
int ml_locate(const struct ml_exports *ex, const char *guest_path, struct ml_location *loc);

/* Whether the cleaned path is a proper ancestor of an export point. */
bool ml_leads_to_export(const struct ml_exports *ex, const char *clean_path);

/* The parent directory of a located path ("/" for "/"), located. */
int ml_locate_parent(const struct ml_exports *ex, const struct ml_location *loc,
                     struct ml_location *parent);

/* The last component of a cleaned path ("" for "/"). */
const char *ml_basename(const char *clean_path);

#define ML_MAX_CHILDREN 64

/*
 * The export points and synthesized directories directly below the
 * cleaned directory path DIR, as names, each once: what a listing of DIR
 * shows on top of (and in place of same-named) real entries.  Returns how
 * many were written to names (at most ML_MAX_CHILDREN).
 */
unsigned ml_exports_children(const struct ml_exports *ex, const char *dir,
                             char names[][NAME_MAX + 1]);

#endif
