/*
 * test_caps_shortcut.c - which GETXATTRs of security.capability the relay
 * answers itself (mount/caps_shortcut.h), fed the requests and replies the
 * kernel and the host would send.
 */
#include <errno.h>
#include <linux/fuse.h>
#include <string.h>

#include "mount/caps_shortcut.h"
#include "unit_check.h"

static uint64_t next_unique = 2;

/* Whether the relay answers a GETXATTR of NAME on NODE itself. */
static bool answered(struct caps_shortcut *c, uint64_t node, const char *name)
{
    struct fuse_in_header ih = { .opcode = FUSE_GETXATTR, .nodeid = node, .unique = 1 };
    return caps_shortcut_answers(c, &ih, name, strlen(name) + 1);
}

static void forward(struct caps_shortcut *c, uint32_t opcode, uint64_t node, uint64_t unique)
{
    struct fuse_in_header ih = { .opcode = opcode, .nodeid = node, .unique = unique };
    char arg[64] = { 0 };
    caps_shortcut_forwarding(c, &ih, arg, sizeof(arg));
}

/* OPCODE in directory 1 is forwarded; the host answers ERROR, NODE. */
static void create(struct caps_shortcut *c, uint32_t opcode, int error, uint64_t node)
{
    uint64_t unique = next_unique += 2;
    forward(c, opcode, 1, unique);
    struct fuse_out_header oh = { .unique = unique, .error = error };
    struct fuse_entry_out out = { .nodeid = node };
    caps_shortcut_reply(c, &oh, &out, error ? 0 : sizeof(out));
}

static void test_a_file_just_created_has_no_caps(void)
{
    struct caps_shortcut *c = caps_shortcut_new();
    CHECK(!answered(c, 5, "security.capability"));
    create(c, FUSE_CREATE, 0, 5);
    create(c, FUSE_MKNOD, 0, 6);
    create(c, FUSE_CREATE, -EEXIST, 7);
    CHECK(answered(c, 5, "security.capability"));
    CHECK(answered(c, 6, "security.capability"));
    CHECK(!answered(c, 7, "security.capability")); /* not created */
    CHECK(!answered(c, 5, "security.selinux"));    /* another name */
    CHECK(!answered(c, 5, "security.capabilityX"));
    CHECK(!answered(NULL, 5, "security.capability")); /* caps=host */
    caps_shortcut_free(c);
}

static void test_whatever_may_give_caps_ends_it(void)
{
    struct caps_shortcut *c = caps_shortcut_new();
    create(c, FUSE_CREATE, 0, 5);
    create(c, FUSE_CREATE, 0, 6);
    create(c, FUSE_CREATE, 0, 7);
    create(c, FUSE_CREATE, 0, 8);
    forward(c, FUSE_SETXATTR, 5, 100);
    forward(c, FUSE_REMOVEXATTR, 6, 102);
    forward(c, FUSE_FORGET, 7, 0);
    struct {
        struct fuse_out_header oh;
        struct fuse_notify_inval_inode_out in;
    } note = { .oh = { .len = sizeof(note), .error = FUSE_NOTIFY_INVAL_INODE },
               .in = { .ino = 8, .off = -1 } };
    caps_shortcut_host_message(c, &note, sizeof(note));
    for (uint64_t node = 5; node <= 8; node++)
        CHECK(!answered(c, node, "security.capability"));
    caps_shortcut_free(c);
}

static void test_a_batch_forget_ends_it_for_each_node(void)
{
    struct caps_shortcut *c = caps_shortcut_new();
    create(c, FUSE_CREATE, 0, 5);
    create(c, FUSE_CREATE, 0, 6);
    create(c, FUSE_CREATE, 0, 9);
    struct {
        struct fuse_batch_forget_in in;
        struct fuse_forget_one one[2];
    } arg = { .in = { .count = 2 }, .one = { { .nodeid = 5, .nlookup = 1 },
                                             { .nodeid = 6, .nlookup = 1 } } };
    struct fuse_in_header ih = { .opcode = FUSE_BATCH_FORGET };
    caps_shortcut_forwarding(c, &ih, &arg, sizeof(arg));
    CHECK(!answered(c, 5, "security.capability"));
    CHECK(!answered(c, 6, "security.capability"));
    CHECK(answered(c, 9, "security.capability"));
    /* a count larger than the bytes that follow reads no further */
    arg.in.count = 1000;
    caps_shortcut_forwarding(c, &ih, &arg, sizeof(arg));
    CHECK(answered(c, 9, "security.capability"));
    caps_shortcut_free(c);
}

static void test_a_full_table_starts_over(void)
{
    struct caps_shortcut *c = caps_shortcut_new();
    for (uint64_t node = 10; node < 10 + 8192; node++)
        create(c, FUSE_CREATE, 0, node);
    CHECK(answered(c, 10, "security.capability"));
    create(c, FUSE_CREATE, 0, 1u << 20); /* one more: the table is cleared */
    CHECK(!answered(c, 10, "security.capability"));
    CHECK(answered(c, 1u << 20, "security.capability"));
    caps_shortcut_free(c);
}

int main(void)
{
    static const struct unit_test tests[] = {
        TEST(test_a_file_just_created_has_no_caps),
        TEST(test_whatever_may_give_caps_ends_it),
        TEST(test_a_batch_forget_ends_it_for_each_node),
        TEST(test_a_full_table_starts_over),
    };
    return RUN_TESTS(tests);
}
