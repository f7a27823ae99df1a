/*
 * export_paths.h - the host directories of the exports, compared at start:
 * an overlay's UPPER and work dir must not overlap anything, and the
 * directory the sandbox binds for them (their nearest common one).
 */
#ifndef FSB_EXPORT_PATHS_H
#define FSB_EXPORT_PATHS_H

#include "engine/session.h"

#include <stddef.h>

/* 0, or -1 after logging one line that names the two overlapping paths. */
int export_paths_check(struct fsb_export *const *exports, unsigned n);

/* PATH made absolute with no symlink, "." or "..": its realpath, or, for
 * a name that does not exist yet (a work dir made at start), its parent's
 * realpath and its last name.  0 or -errno. */
int export_path_canonical(const char *path, char out[PATH_MAX]);

/* The nearest directory holding both canonical paths A and B (OUT may be
 * "/"). */
void export_path_common(const char *a, const char *b, char out[PATH_MAX]);

#endif
