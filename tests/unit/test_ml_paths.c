/*
 * test_ml_paths.c - guest paths to exports for matchlock clients: lexical
 * cleaning, longest whole-component prefix, synthesized directories and
 * the export points a listing shows.
 */
#include "unit_check.h"
#include "matchlock/ml_paths.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>


static struct ml_location loc;

static struct ml_exports *make(const char *const *names, unsigned n)
{
    static struct fsb_export exports[8];
    for (unsigned i = 0; i < n; i++)
        snprintf(exports[i].name, sizeof(exports[i].name), "%s", names[i]);
    return ml_exports_new(exports, n, ~(uint64_t)0);
}

/* PATH cleans to CLEAN and lies in export EXPORT at REL. */
static bool in_export(struct ml_exports *ex, const char *path, const char *clean,
                      unsigned export, const char *rel)
{
    return ml_locate(ex, path, &loc) == 0 && loc.place == ML_PLACE_EXPORT &&
           strcmp(loc.path, clean) == 0 && loc.export == export && strcmp(loc.rel, rel) == 0;
}

static enum ml_place place_of(struct ml_exports *ex, const char *path)
{
    return ml_locate(ex, path, &loc) == 0 ? loc.place : (enum ml_place)-1;
}

static void test_cleaning(void)
{
    const char *names[] = {"/"};
    struct ml_exports *ex = make(names, 1);
    CHECK(in_export(ex, "/", "/", 0, ""));
    CHECK(in_export(ex, "//a///b/", "/a/b", 0, "a/b"));
    CHECK(in_export(ex, "/a/./b/.", "/a/b", 0, "a/b"));
    CHECK(in_export(ex, "/a/../b", "/b", 0, "b"));
    CHECK(in_export(ex, "/../../..", "/", 0, ""));
    CHECK(in_export(ex, "/a/b/../../../c", "/c", 0, "c"));
    CHECK(in_export(ex, "/...", "/...", 0, "..."));
    CHECK(ml_locate(ex, "", &loc) == -EINVAL);
    CHECK(ml_locate(ex, "a/b", &loc) == -EINVAL);
    char long_name[300];
    memset(long_name, 'x', sizeof(long_name));
    long_name[0] = '/';
    long_name[257] = '\0'; /* a 256-byte component */
    CHECK(ml_locate(ex, long_name, &loc) == -ENAMETOOLONG);
    long_name[256] = '\0';
    CHECK(ml_locate(ex, long_name, &loc) == 0);
    ml_exports_free(ex);
}

static void test_longest_whole_component_prefix(void)
{
    const char *names[] = {"/w", "/w/sub", "plain", "/deep/er/est"};
    struct ml_exports *ex = make(names, 4);
    CHECK(in_export(ex, "/w", "/w", 0, ""));
    CHECK(in_export(ex, "/w/x/y", "/w/x/y", 0, "x/y"));
    CHECK(in_export(ex, "/w/sub", "/w/sub", 1, ""));
    CHECK(in_export(ex, "/w/sub/z", "/w/sub/z", 1, "z"));
    CHECK(in_export(ex, "/w/subway", "/w/subway", 0, "subway"));
    CHECK(in_export(ex, "/plain/p", "/plain/p", 2, "p"));
    CHECK(in_export(ex, "/w/sub/../x", "/w/x", 0, "x"));
    CHECK(place_of(ex, "/wx") == ML_PLACE_OUTSIDE);
    CHECK(place_of(ex, "/") == ML_PLACE_SYNTHETIC);
    CHECK(place_of(ex, "/deep") == ML_PLACE_SYNTHETIC);
    CHECK(place_of(ex, "/deep/er") == ML_PLACE_SYNTHETIC);
    CHECK(place_of(ex, "/deep/e") == ML_PLACE_OUTSIDE);
    CHECK(place_of(ex, "/deep/er/x") == ML_PLACE_OUTSIDE);
    CHECK(place_of(ex, "/w/../..") == ML_PLACE_SYNTHETIC);
    CHECK(ml_leads_to_export(ex, "/w") && !ml_leads_to_export(ex, "/w/sub"));
    ml_exports_free(ex);
}

static void test_parents_and_names(void)
{
    const char *names[] = {"/a/b"};
    struct ml_exports *ex = make(names, 1);
    struct ml_location up;
    CHECK(ml_locate(ex, "/a/b/c", &loc) == 0 && strcmp(ml_basename(loc.path), "c") == 0);
    CHECK(ml_locate_parent(ex, &loc, &up) == 0 && strcmp(up.path, "/a/b") == 0);
    CHECK(up.place == ML_PLACE_EXPORT && up.rel[0] == '\0');
    CHECK(ml_locate(ex, "/a", &loc) == 0 && ml_locate_parent(ex, &loc, &up) == 0);
    CHECK(strcmp(up.path, "/") == 0 && up.place == ML_PLACE_SYNTHETIC);
    CHECK(ml_locate(ex, "/", &loc) == 0 && ml_locate_parent(ex, &loc, &up) == 0);
    CHECK(strcmp(up.path, "/") == 0 && strcmp(ml_basename(loc.path), "") == 0);
    ml_exports_free(ex);
}

static void test_children_once_each(void)
{
    const char *names[] = {"/a/b", "/a/c", "/a/b/d", "/x", "/a/b2"};
    struct ml_exports *ex = make(names, 5);
    char kids[ML_MAX_CHILDREN][NAME_MAX + 1];
    CHECK(ml_exports_children(ex, "/", kids) == 2);
    CHECK(strcmp(kids[0], "a") == 0 && strcmp(kids[1], "x") == 0);
    CHECK(ml_exports_children(ex, "/a", kids) == 3);
    CHECK(strcmp(kids[0], "b") == 0 && strcmp(kids[1], "c") == 0 && strcmp(kids[2], "b2") == 0);
    CHECK(ml_exports_children(ex, "/a/b", kids) == 1 && strcmp(kids[0], "d") == 0);
    CHECK(ml_exports_children(ex, "/a/b/d", kids) == 0);
    CHECK(ml_exports_children(ex, "/x/y", kids) == 0);
    ml_exports_free(ex);
}


/* A connection sees only the exports its listener serves it: the others
 * are outside every export (and above none), and the indices stay those of
 * the daemon's export list. */
static void test_only_visible_exports(void)
{
    static struct fsb_export exports[3];
    const char *names[] = {"/", "/vm1", "/vm2/deep"};
    for (unsigned i = 0; i < 3; i++)
        snprintf(exports[i].name, sizeof(exports[i].name), "%s", names[i]);
    struct ml_exports *ex = ml_exports_new(exports, 3, 1u << 2);
    CHECK(in_export(ex, "/vm2/deep/f", "/vm2/deep/f", 2, "f"));
    CHECK(place_of(ex, "/vm2") == ML_PLACE_SYNTHETIC);
    CHECK(place_of(ex, "/vm1/f") == ML_PLACE_OUTSIDE);
    CHECK(place_of(ex, "/etc") == ML_PLACE_OUTSIDE);
    char kids[ML_MAX_CHILDREN][NAME_MAX + 1];
    CHECK(ml_exports_children(ex, "/", kids) == 1 && strcmp(kids[0], "vm2") == 0);
    ml_exports_free(ex);
    ex = ml_exports_new(exports, 3, 1u << 1);
    CHECK(in_export(ex, "/vm1", "/vm1", 1, ""));
    CHECK(place_of(ex, "/vm2/deep") == ML_PLACE_OUTSIDE);
    ml_exports_free(ex);
    ex = ml_exports_new(exports, 3, 0);
    CHECK(place_of(ex, "/") == ML_PLACE_OUTSIDE);
    ml_exports_free(ex);
}

/* Fills PATH with the prefix of export NAME, then "/" and BELOW bytes of
 * 199-byte names. */
static void long_path(char *path, const char *name, size_t below)
{
    char prefix[ML_PATH_SIZE];
    ml_export_prefix(name, prefix);
    size_t len = (size_t)sprintf(path, "%s", strcmp(prefix, "/") ? prefix : "");
    for (size_t i = 0; i < below + 1; i++)
        path[len + i] = i % 200 == 0 ? '/' : 'n';
    path[len + below + 1] = '\0';
}

/* PATH_MAX - 1 bytes below an export's prefix, as on a local disk: the
 * prefix is not counted, for the longest prefix and for "/". */
static void test_prefix_not_counted(void)
{
    static char longest[ML_PREFIX_MAX], path[ML_PATH_SIZE + 2];
    memset(longest, 'p', ML_PREFIX_MAX - 1); /* "/" and 255 bytes */
    const char *names[] = {longest, "/"};
    for (unsigned i = 0; i < 2; i++) {
        struct ml_exports *ex = make(names + i, 1);
        long_path(path, names[i], PATH_MAX - 1);
        CHECK(ml_locate(ex, path, &loc) == 0 && strlen(loc.rel) == PATH_MAX - 1);
        long_path(path, names[i], PATH_MAX);
        CHECK(ml_locate(ex, path, &loc) == -ENAMETOOLONG);
        ml_exports_free(ex);
    }
}

int main(void)
{
    static const struct unit_test tests[] = {
        TEST(test_cleaning),
        TEST(test_longest_whole_component_prefix),
        TEST(test_parents_and_names),
        TEST(test_children_once_each),
        TEST(test_only_visible_exports),
        TEST(test_prefix_not_counted),
    };
    return RUN_TESTS(tests);
}
