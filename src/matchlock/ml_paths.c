/*
 * ml_paths.c - see ml_paths.h.  Pure string work: nothing here touches
 * the host filesystem.
 */
#include "matchlock/ml_paths.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ml_prefix {
    char *path; /* cleaned: "/" or "/a/b" */
    size_t len;
    unsigned export; /* its index in the exports given */
};

struct ml_exports {
    unsigned n;
    struct ml_prefix prefix[];
};

void ml_export_prefix(const char *name, char out[ML_PATH_SIZE])
{
    if (name[0] == '/')
        snprintf(out, ML_PATH_SIZE, "%s", name);
    else
        snprintf(out, ML_PATH_SIZE, "/%s", name);
}

void ml_exports_free(struct ml_exports *ex)
{
    if (!ex)
        return;
    for (unsigned i = 0; i < ex->n; i++)
        free(ex->prefix[i].path);
    free(ex);
}

/* Lexical cleaning into out (ML_PATH_SIZE bytes), like Go's path.Clean on
 * an absolute path. */
static int clean_path(const char *in, char *out)
{
    if (in[0] != '/')
        return -EINVAL;
    size_t len = 0;
    for (const char *p = in; *p;) {
        while (*p == '/')
            p++;
        const char *start = p;
        while (*p && *p != '/')
            p++;
        size_t n = (size_t)(p - start);
        if (n == 0 || (n == 1 && start[0] == '.'))
            continue;
        if (n == 2 && start[0] == '.' && start[1] == '.') {
            while (len > 0 && out[len - 1] != '/')
                len--;
            if (len > 0)
                len--; /* the '/' before the removed component */
            continue;
        }
        if (n > NAME_MAX || len + 1 + n >= ML_PATH_SIZE)
            return -ENAMETOOLONG;
        out[len++] = '/';
        memcpy(out + len, start, n);
        len += n;
    }
    if (len == 0)
        out[len++] = '/';
    out[len] = '\0';
    return 0;
}

struct ml_exports *ml_exports_new(const struct fsb_export *exports, unsigned n,
                                  uint64_t visible)
{
    struct ml_exports *ex = calloc(1, sizeof(*ex) + n * sizeof(ex->prefix[0]));
    if (!ex)
        return NULL;
    char raw[ML_PATH_SIZE], clean[ML_PATH_SIZE];
    for (unsigned i = 0; i < n && i < 64; i++) {
        if (!(visible >> i & 1))
            continue;
        /* options.c accepted the name, so cleaning only removes what it
         * may hold redundantly (a trailing '/'). */
        struct ml_prefix *pre = &ex->prefix[ex->n];
        ml_export_prefix(exports[i].name, raw);
        if (clean_path(raw, clean) < 0 || !(pre->path = strdup(clean))) {
            ml_exports_free(ex);
            return NULL;
        }
        pre->len = strlen(clean);
        pre->export = i;
        ex->n++;
    }
    return ex;
}

/* Whether the cleaned path P lies at or below the cleaned prefix PRE. */
static bool below(const char *p, const struct ml_prefix *pre)
{
    if (pre->len == 1)
        return true; /* "/" */
    return strncmp(p, pre->path, pre->len) == 0 && (p[pre->len] == '\0' || p[pre->len] == '/');
}

/* Whether the cleaned path P is a proper ancestor of the prefix PRE. */
static bool above(const char *p, size_t plen, const struct ml_prefix *pre)
{
    if (plen >= pre->len || strncmp(pre->path, p, plen) != 0)
        return false;
    return plen == 1 || pre->path[plen] == '/';
}

int ml_locate(const struct ml_exports *ex, const char *guest_path, struct ml_location *loc)
{
    int err = clean_path(guest_path, loc->path);
    if (err)
        return err;
    loc->place = ML_PLACE_OUTSIDE;
    loc->rel = NULL;
    if (!ex)
        return 0;
    size_t best_len = 0;
    for (unsigned i = 0; i < ex->n; i++) {
        const struct ml_prefix *pre = &ex->prefix[i];
        if (below(loc->path, pre) && (loc->place != ML_PLACE_EXPORT || pre->len > best_len)) {
            loc->place = ML_PLACE_EXPORT;
            loc->export = pre->export;
            best_len = pre->len;
        }
    }
    if (loc->place == ML_PLACE_EXPORT) {
        const char *rel = loc->path + (best_len == 1 ? 0 : best_len);
        loc->rel = *rel == '/' ? rel + 1 : rel;
        return strlen(loc->rel) > ML_BELOW_PREFIX_MAX ? -ENAMETOOLONG : 0;
    }
    if (ml_leads_to_export(ex, loc->path))
        loc->place = ML_PLACE_SYNTHETIC;
    return 0;
}

bool ml_leads_to_export(const struct ml_exports *ex, const char *clean_path)
{
    size_t plen = strlen(clean_path);
    for (unsigned i = 0; i < ex->n; i++)
        if (above(clean_path, plen, &ex->prefix[i]))
            return true;
    return false;
}

int ml_locate_parent(const struct ml_exports *ex, const struct ml_location *loc,
                     struct ml_location *parent)
{
    char dir[ML_PATH_SIZE];
    const char *base = ml_basename(loc->path);
    size_t len = (size_t)(base - loc->path);
    memcpy(dir, loc->path, len);
    dir[len > 1 ? len - 1 : len] = '\0'; /* drop the '/' before the name, except "/" */
    return ml_locate(ex, dir, parent);
}

const char *ml_basename(const char *path)
{
    return strrchr(path, '/') + 1;
}

unsigned ml_exports_children(const struct ml_exports *ex, const char *dir,
                             char names[][NAME_MAX + 1])
{
    size_t dlen = strlen(dir);
    unsigned n = 0;
    for (unsigned i = 0; i < ex->n && n < ML_MAX_CHILDREN; i++) {
        const struct ml_prefix *pre = &ex->prefix[i];
        if (!above(dir, dlen, pre))
            continue;
        const char *start = pre->path + (dlen == 1 ? 1 : dlen + 1);
        size_t len = strcspn(start, "/");
        bool seen = false;
        for (unsigned j = 0; j < n && !seen; j++)
            seen = strlen(names[j]) == len && memcmp(names[j], start, len) == 0;
        if (seen)
            continue;
        memcpy(names[n], start, len);
        names[n++][len] = '\0';
    }
    return n;
}
