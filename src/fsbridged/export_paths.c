/*
 * export_paths.c - see export_paths.h.
 *
 * An overlay's UPPER and work dir are written behind the guest's back
 * (copy-ups, whiteouts, metadata xattrs, staging).  Any other view of the
 * same tree breaks a promise: UPPER inside LOWER writes to LOWER, which is
 * never written; LOWER inside UPPER shows the merged view inside itself; a
 * work dir inside UPPER shows staging files to the guest (and overlayfs
 * refuses it); two exports on one UPPER or work dir race each other's
 * copy-ups, whose lock is per export; a plain export over an UPPER lets
 * its guest forge whiteouts there.  So UPPER and the work dir overlap
 * nothing: not their own LOWER, not each other, not any export's
 * directory.  LOWERs and plain exports may overlap each other: sharing a
 * tree to read is an ordinary use.
 */
#include "fsbridged/export_paths.h"
#include "common/log.h"

#include <errno.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int export_path_canonical(const char *path, char out[PATH_MAX])
{
    if (realpath(path, out))
        return 0;
    if (errno != ENOENT)
        return -errno;
    char dir[PATH_MAX], base[PATH_MAX], parent[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", path);
    snprintf(base, sizeof(base), "%s", path);
    if (!realpath(dirname(dir), parent))
        return -errno;
    const char *name = basename(base);
    int r = snprintf(out, PATH_MAX, "%s/%s", strcmp(parent, "/") ? parent : "", name);
    return r < 0 || r >= PATH_MAX ? -ENAMETOOLONG : 0;
}

/* Whether one of the canonical paths A and B is, or is inside, the other. */
static bool nested(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), n = la < lb ? la : lb;
    if (strncmp(a, b, n) != 0)
        return false;
    const char *longer = la < lb ? b : a;
    return la == lb || n == 1 || longer[n] == '/'; /* n == 1: "/" holds all */
}

void export_path_common(const char *a, const char *b, char out[PATH_MAX])
{
    size_t i = 0;
    while (a[i] && a[i] == b[i])
        i++;
    bool at_boundary = (a[i] == 0 || a[i] == '/') && (b[i] == 0 || b[i] == '/');
    size_t end = i; /* one holds the other: the shorter */
    if (!at_boundary)
        while (end > 0 && a[--end] != '/')
            ; /* back to the last directory both share */
    snprintf(out, PATH_MAX, "%.*s", end ? (int)end : 1, a);
}

struct export_dir {
    const struct fsb_export *export;
    const char *what;  /* "lower", "upper", ... */
    bool written;      /* an overlay's UPPER or work dir */
    char path[PATH_MAX];
};

static int add_dir(struct export_dir *d, const struct fsb_export *e, const char *what,
                   bool written, const char *path)
{
    *d = (struct export_dir){ .export = e, .what = what, .written = written };
    int err = export_path_canonical(path, d->path);
    if (err)
        log_error("export %s: %s %s: %s", e->name, what, path, strerror(-err));
    return err;
}

/* The directories of E (1 or 3) into DIRS; their number, or -1. */
static int dirs_of(const struct fsb_export *e, struct export_dir *dirs)
{
    if (!e->overlay[0])
        return add_dir(&dirs[0], e, "directory", false, e->path) ? -1 : 1;
    if (add_dir(&dirs[0], e, "lower directory", false, e->path) ||
        add_dir(&dirs[1], e, "upper directory", true, e->overlay) ||
        add_dir(&dirs[2], e, "work dir", true, e->overlay_work))
        return -1;
    return 3;
}

int export_paths_check(struct fsb_export *const *exports, unsigned n)
{
    struct export_dir *dirs = calloc(3 * (size_t)n + 1, sizeof(*dirs));
    unsigned count = 0;
    int r = dirs ? 0 : -1;
    for (unsigned i = 0; i < n && r == 0; i++) {
        int k = dirs_of(exports[i], dirs + count);
        r = k < 0 ? -1 : 0;
        count += k < 0 ? 0 : (unsigned)k;
    }
    for (unsigned i = 0; i < count && r == 0; i++)
        for (unsigned j = i + 1; j < count && r == 0; j++) {
            const struct export_dir *a = &dirs[i], *b = &dirs[j];
            if ((a->written || b->written) && nested(a->path, b->path)) {
                log_error("export %s: %s %s overlaps export %s's %s %s: an overlay's upper "
                          "and work dirs must overlap no other layer or export",
                          a->export->name, a->what, a->path, b->export->name, b->what,
                          b->path);
                r = -1;
            }
        }
    free(dirs);
    return r;
}
