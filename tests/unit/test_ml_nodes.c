/*
 * test_ml_nodes.c - the node table of fsbridge-mount --protocol=matchlock
 * (src/mount_matchlock/matchlock_nodes.c): paths from names, renames of subtrees,
 * hard links as one node, detaching, and every node freed once the kernel
 * forgets it (the sanitizer build reports a leak otherwise).
 */
#include <errno.h>
#include <limits.h>
#include <linux/fuse.h>
#include <string.h>

#include "matchlock/ml_codec.h"
#include "mount_matchlock/matchlock_nodes.h"
#include "unit_check.h"

static struct stat file_attr(uint64_t ino, nlink_t nlink)
{
    struct stat st = { .st_ino = ino, .st_mode = S_IFREG | 0644, .st_nlink = nlink };
    return st;
}

static struct stat dir_attr(uint64_t ino)
{
    struct stat st = { .st_ino = ino, .st_mode = S_IFDIR | 0755, .st_nlink = 2 };
    return st;
}

/* The path of INO (and NAME), or an "<errno>" string. */
static const char *path_of(struct ml_nodes *t, ml_ino_t ino, const char *name)
{
    static char buf[ML_PATH_SIZE];
    int err = ml_nodes_path(t, ino, name, buf, sizeof(buf));
    if (err)
        snprintf(buf, sizeof(buf), "<%s>", strerror(-err));
    return buf;
}

static void test_paths_under_a_prefix(void)
{
    struct ml_nodes *t = ml_nodes_new("/workspace");
    struct stat d = dir_attr(10), f = file_attr(11, 1);
    CHECK(strcmp(path_of(t, FUSE_ROOT_ID, NULL), "/workspace") == 0);
    CHECK(strcmp(path_of(t, FUSE_ROOT_ID, "a"), "/workspace/a") == 0);
    ml_ino_t src = ml_nodes_remember(t, FUSE_ROOT_ID, "src", &d);
    ml_ino_t c = ml_nodes_remember(t, src, "main.c", &f);
    CHECK(strcmp(path_of(t, c, NULL), "/workspace/src/main.c") == 0);
    CHECK(strcmp(path_of(t, src, "x"), "/workspace/src/x") == 0);
    /* The same name again is the same node. */
    CHECK(ml_nodes_remember(t, FUSE_ROOT_ID, "src", &d) == src);
    ml_nodes_forget(t, src, 2);
    ml_nodes_forget(t, c, 1);
    ml_nodes_free(t);
}

static void test_root_prefix(void)
{
    struct ml_nodes *t = ml_nodes_new("/");
    struct stat f = file_attr(5, 1);
    CHECK(strcmp(path_of(t, FUSE_ROOT_ID, NULL), "/") == 0);
    ml_ino_t a = ml_nodes_remember(t, FUSE_ROOT_ID, "a", &f);
    CHECK(strcmp(path_of(t, a, NULL), "/a") == 0);
    ml_nodes_forget(t, a, 1);
    ml_nodes_free(t);
}

static void test_rename_moves_a_subtree(void)
{
    struct ml_nodes *t = ml_nodes_new("/w");
    struct stat d1 = dir_attr(1), d2 = dir_attr(2), d3 = dir_attr(3), f = file_attr(4, 1);
    ml_ino_t a = ml_nodes_remember(t, FUSE_ROOT_ID, "a", &d1);
    ml_ino_t b = ml_nodes_remember(t, a, "b", &d2);
    ml_ino_t file = ml_nodes_remember(t, b, "f", &f);
    ml_ino_t z = ml_nodes_remember(t, FUSE_ROOT_ID, "z", &d3);
    ml_nodes_moved(t, FUSE_ROOT_ID, "a", z, "moved");
    CHECK(strcmp(path_of(t, file, NULL), "/w/z/moved/b/f") == 0);
    CHECK(strcmp(path_of(t, b, NULL), "/w/z/moved/b") == 0);
    /* A rename the table does not know of changes nothing. */
    ml_nodes_moved(t, FUSE_ROOT_ID, "unknown", FUSE_ROOT_ID, "other");
    CHECK(strcmp(path_of(t, a, NULL), "/w/z/moved") == 0);
    ml_nodes_forget(t, a, 1);    /* still held by its child */
    CHECK(strcmp(path_of(t, file, NULL), "/w/z/moved/b/f") == 0);
    ml_nodes_forget(t, file, 1);
    ml_nodes_forget(t, b, 1);
    ml_nodes_forget(t, z, 1);
    ml_nodes_free(t);
}

static void test_rename_over_detaches_the_target(void)
{
    struct ml_nodes *t = ml_nodes_new("/w");
    struct stat f1 = file_attr(1, 1), f2 = file_attr(2, 1), st;
    f2.st_size = 7;
    ml_ino_t x = ml_nodes_remember(t, FUSE_ROOT_ID, "x", &f1);
    ml_ino_t y = ml_nodes_remember(t, FUSE_ROOT_ID, "y", &f2);
    ml_nodes_moved(t, FUSE_ROOT_ID, "x", FUSE_ROOT_ID, "y");
    CHECK(strcmp(path_of(t, x, NULL), "/w/y") == 0);
    CHECK(strcmp(path_of(t, y, NULL), "<No such file or directory>") == 0);
    CHECK(ml_nodes_detached_attr(t, y, &st));
    CHECK(st.st_nlink == 0 && st.st_size == 7 && st.st_ino == 2);
    ml_nodes_resized(t, y, 100, true);
    ml_nodes_resized(t, y, 50, true); /* a write never shrinks */
    CHECK(ml_nodes_detached_attr(t, y, &st) && st.st_size == 100);
    ml_nodes_resized(t, y, 3, false);
    CHECK(ml_nodes_detached_attr(t, y, &st) && st.st_size == 3);
    CHECK(!ml_nodes_detached_attr(t, x, &st));
    ml_nodes_forget(t, x, 1);
    ml_nodes_forget(t, y, 1);
    ml_nodes_free(t);
}

static void test_hard_links_are_one_node(void)
{
    struct ml_nodes *t = ml_nodes_new("/w");
    struct stat one = file_attr(42, 1), two = file_attr(42, 2), d = dir_attr(7);
    ml_ino_t sub = ml_nodes_remember(t, FUSE_ROOT_ID, "sub", &d);
    ml_ino_t a = ml_nodes_remember(t, FUSE_ROOT_ID, "a", &one);
    ml_ino_t b = ml_nodes_remember(t, sub, "b", &two); /* link(a, sub/b) */
    CHECK(a == b);
    /* The first name gives the path; when it goes, the next one does. */
    CHECK(strcmp(path_of(t, a, NULL), "/w/a") == 0);
    ml_nodes_removed(t, FUSE_ROOT_ID, "a");
    CHECK(strcmp(path_of(t, a, NULL), "/w/sub/b") == 0);
    ml_nodes_removed(t, sub, "b");
    CHECK(strcmp(path_of(t, a, NULL), "<No such file or directory>") == 0);
    /* A file of the same inode number appearing now is another file. */
    ml_ino_t c = ml_nodes_remember(t, FUSE_ROOT_ID, "c", &two);
    CHECK(c != a);
    ml_nodes_forget(t, a, 2);
    ml_nodes_forget(t, c, 1);
    ml_nodes_forget(t, sub, 1);
    ml_nodes_free(t);
}

static void test_single_link_and_directories_are_not_merged(void)
{
    struct ml_nodes *t = ml_nodes_new("/w");
    struct stat f = file_attr(9, 1), d = dir_attr(9);
    d.st_nlink = 3;
    ml_ino_t a = ml_nodes_remember(t, FUSE_ROOT_ID, "a", &f);
    ml_ino_t b = ml_nodes_remember(t, FUSE_ROOT_ID, "b", &f); /* nlink 1: not a link */
    ml_ino_t d1 = ml_nodes_remember(t, FUSE_ROOT_ID, "d1", &d);
    ml_ino_t d2 = ml_nodes_remember(t, FUSE_ROOT_ID, "d2", &d);
    CHECK(a != b && d1 != d2);
    ml_nodes_forget(t, a, 1);
    ml_nodes_forget(t, b, 1);
    ml_nodes_forget(t, d1, 1);
    ml_nodes_forget(t, d2, 1);
    ml_nodes_free(t);
}

static void test_replaced_file_is_a_new_node(void)
{
    struct ml_nodes *t = ml_nodes_new("/w");
    struct stat old = file_attr(1, 1), new = file_attr(2, 1), st;
    ml_ino_t a = ml_nodes_remember(t, FUSE_ROOT_ID, "f", &old);
    ml_ino_t b = ml_nodes_remember(t, FUSE_ROOT_ID, "f", &new);
    CHECK(a != b);
    CHECK(ml_nodes_detached_attr(t, a, &st) && st.st_ino == 1);
    CHECK(strcmp(path_of(t, b, NULL), "/w/f") == 0);
    ml_nodes_forget(t, a, 1);
    ml_nodes_forget(t, b, 1);
    ml_nodes_free(t);
}

static void test_detached_directory_detaches_its_children(void)
{
    struct ml_nodes *t = ml_nodes_new("/w");
    struct stat d = dir_attr(1), f = file_attr(2, 1);
    ml_ino_t dir = ml_nodes_remember(t, FUSE_ROOT_ID, "d", &d);
    ml_ino_t file = ml_nodes_remember(t, dir, "f", &f);
    ml_nodes_removed(t, FUSE_ROOT_ID, "d");
    CHECK(strcmp(path_of(t, file, NULL), "<No such file or directory>") == 0);
    ml_nodes_forget(t, dir, 1);
    ml_nodes_forget(t, file, 1);
    ml_nodes_free(t);
}

/* The part below the prefix may be PATH_MAX - 1 bytes long, however long
 * the prefix (up to ML_PREFIX_MAX): 16 names of 255 bytes, not 17. */
static void test_too_long_paths(void)
{
    char prefix[ML_PREFIX_MAX + 1];
    memset(prefix, 'p', ML_PREFIX_MAX);
    prefix[0] = '/';
    prefix[ML_PREFIX_MAX] = 0;
    struct ml_nodes *t = ml_nodes_new(prefix);
    struct stat d = dir_attr(1);
    static char name[NAME_MAX + 1], buf[ML_PATH_SIZE];
    memset(name, 'n', NAME_MAX);
    name[NAME_MAX] = 0;
    ml_ino_t ids[20], parent = FUSE_ROOT_ID;
    for (int i = 0; i < 20; i++, d.st_ino++)
        parent = ids[i] = ml_nodes_remember(t, parent, name, &d);
    CHECK(ml_nodes_path(t, ids[15], NULL, buf, sizeof(buf)) == 0);
    CHECK(strlen(buf) == ML_PATH_MAX && strlen(buf) - ML_PREFIX_MAX - 1 == PATH_MAX - 1);
    CHECK(ml_nodes_path(t, ids[14], "x", buf, sizeof(buf)) == 0);
    CHECK(ml_nodes_path(t, ids[16], NULL, buf, sizeof(buf)) == -ENAMETOOLONG);
    CHECK(ml_nodes_path(t, ids[15], "x", buf, sizeof(buf)) == -ENAMETOOLONG);
    CHECK(ml_nodes_path(t, ids[19], NULL, buf, sizeof(buf)) == -ENAMETOOLONG);
    CHECK(ml_nodes_path(t, FUSE_ROOT_ID, "x", buf, 4) == -ENAMETOOLONG);
    for (int i = 19; i >= 0; i--)
        ml_nodes_forget(t, ids[i], 1);
    ml_nodes_free(t);
}

static void test_many_nodes_grow_the_tables(void)
{
    struct ml_nodes *t = ml_nodes_new("/w");
    static ml_ino_t ids[5000];
    char name[32];
    for (int i = 0; i < 5000; i++) {
        struct stat f = file_attr(1000 + (uint64_t)i, 1);
        snprintf(name, sizeof(name), "f%d", i);
        ids[i] = ml_nodes_remember(t, FUSE_ROOT_ID, name, &f);
    }
    CHECK(strcmp(path_of(t, ids[4321], NULL), "/w/f4321") == 0);
    for (int i = 0; i < 5000; i++)
        ml_nodes_forget(t, ids[i], 1);
    ml_nodes_free(t);
}

int main(void)
{
    static const struct unit_test tests[] = {
        TEST(test_paths_under_a_prefix),
        TEST(test_root_prefix),
        TEST(test_rename_moves_a_subtree),
        TEST(test_rename_over_detaches_the_target),
        TEST(test_hard_links_are_one_node),
        TEST(test_single_link_and_directories_are_not_merged),
        TEST(test_replaced_file_is_a_new_node),
        TEST(test_detached_directory_detaches_its_children),
        TEST(test_too_long_paths),
        TEST(test_many_nodes_grow_the_tables),
    };
    return RUN_TESTS(tests);
}
