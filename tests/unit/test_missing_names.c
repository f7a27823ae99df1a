/*
 * test_missing_names.c - which LOOKUPs the relay answers with a negative
 * entry itself (mount/missing_names.h), fed the requests, notes, replies
 * and notifications the kernel and the host would send.
 */
#include <errno.h>
#include <linux/fuse.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "mount/missing_names.h"
#include "transport/stream_hello.h"
#include "unit_check.h"

static uint64_t next_unique = 2;

/* Whether the relay answers a LOOKUP of NAME in DIR itself. */
static bool answered(struct missing_names *m, uint64_t dir, const char *name)
{
    struct fuse_in_header ih = { .opcode = FUSE_LOOKUP, .nodeid = dir, .unique = 1 };
    struct fuse_entry_out out = { .nodeid = 99 };
    bool yes = missing_names_answer(m, &ih, name, strlen(name) + 1, &out);
    if (yes)
        CHECK(out.nodeid == 0 && out.entry_valid == 86400);
    return yes;
}

/* Request OPCODE on NODE goes to the host with ARG and NAMES (LEN bytes). */
static uint64_t forward(struct missing_names *m, uint32_t opcode, uint64_t node,
                        const void *arg, size_t arg_len, const char *names, size_t len)
{
    uint64_t unique = next_unique += 2;
    struct fuse_in_header ih = { .opcode = opcode, .nodeid = node, .unique = unique };
    missing_names_forwarding(m, &ih, arg, arg_len, names, len);
    return unique;
}

static void create(struct missing_names *m, uint32_t opcode, uint64_t dir, const char *name)
{
    char arg[16] = { 0 };
    forward(m, opcode, dir, arg, sizeof(arg), name, strlen(name) + 1);
}

static void notified(struct missing_names *m, uint32_t code, const void *body, size_t size)
{
    unsigned char msg[256];
    struct fuse_out_header oh = { .len = (uint32_t)(sizeof(oh) + size), .error = (int32_t)code };
    memcpy(msg, &oh, sizeof(oh));
    if (size)
        memcpy(msg + sizeof(oh), body, size);
    missing_names_notified(m, msg, sizeof(oh) + size);
}

static void note(struct missing_names *m, uint64_t dir, uint64_t unique)
{
    struct fsb_empty_dir_note n = { .nodeid = dir, .unique = unique, .entry_valid = 86400 };
    unsigned char msg[FSB_EMPTY_DIR_NOTE_MSG_SIZE];
    fsb_empty_dir_note_encode(&n, msg);
    missing_names_note(m, msg, sizeof(msg));
}

/* A MKDIR in PARENT whose reply makes DIR, with a note when NOTED. */
static void mkdir_in(struct missing_names *m, uint64_t parent, const char *name, uint64_t dir,
                     bool noted)
{
    struct fuse_mkdir_in in = { .mode = 0755 };
    uint64_t unique = forward(m, FUSE_MKDIR, parent, &in, sizeof(in), name, strlen(name) + 1);
    if (noted)
        note(m, dir, unique);
    missing_names_replied(m, unique);
}

static void inval_entry(struct missing_names *m, uint64_t parent)
{
    struct {
        struct fuse_notify_inval_entry_out e;
        char name[2];
    } body = { .e = { .parent = parent, .namelen = 1 }, .name = "x" };
    notified(m, FUSE_NOTIFY_INVAL_ENTRY, &body, sizeof(body));
}

static void test_a_noted_directory_has_no_names_but_its_own(void)
{
    struct missing_names *m = missing_names_new();
    CHECK(!answered(m, 10, "a"));
    mkdir_in(m, 1, "d", 10, true);
    mkdir_in(m, 1, "e", 11, false); /* the host said nothing */
    CHECK(answered(m, 10, "a"));
    CHECK(!answered(m, 11, "a"));
    CHECK(!answered(m, 10, "."));
    CHECK(!answered(m, 10, ".."));
    create(m, FUSE_CREATE, 10, "a");
    create(m, FUSE_MKNOD, 10, "fifo");
    create(m, FUSE_SYMLINK, 10, "sym\0target");
    create(m, FUSE_LINK, 10, "hard");
    mkdir_in(m, 10, "sub", 12, true);
    CHECK(!answered(m, 10, "a") && !answered(m, 10, "fifo") && !answered(m, 10, "sym") &&
          !answered(m, 10, "hard") && !answered(m, 10, "sub"));
    CHECK(answered(m, 10, "target")); /* a symlink's target is no name */
    CHECK(answered(m, 10, "b"));
    CHECK(answered(m, 12, "a")); /* the new one's own names */
    CHECK(!answered(NULL, 10, "b")); /* lookups=host */
    missing_names_free(m);
}

static void test_a_rename_into_it_names_the_target(void)
{
    struct missing_names *m = missing_names_new();
    mkdir_in(m, 1, "d", 10, true);
    struct fuse_rename2_in in = { .newdir = 10 };
    static const char names[] = "old\0new";
    forward(m, FUSE_RENAME2, 1, &in, sizeof(in), names, sizeof(names));
    CHECK(!answered(m, 10, "new"));
    CHECK(answered(m, 10, "old"));
    struct fuse_rename_in in1 = { .newdir = 10 };
    static const char names1[] = "x\0y";
    forward(m, FUSE_RENAME, 1, &in1, sizeof(in1), names1, sizeof(names1));
    CHECK(!answered(m, 10, "y"));
    /* a target it cannot read ends the directory */
    static const char bad[] = "x";
    forward(m, FUSE_RENAME, 1, &in1, sizeof(in1), bad, sizeof(bad));
    CHECK(!answered(m, 10, "z"));
    missing_names_free(m);
}

static void test_notifications_forgets_and_unknown_requests_end_it(void)
{
    struct missing_names *m = missing_names_new();
    for (uint64_t d = 10; d < 16; d++)
        mkdir_in(m, 1, "d", d, true);
    inval_entry(m, 10);
    CHECK(!answered(m, 10, "a") && answered(m, 11, "a"));
    struct fuse_notify_inval_inode_out ii = { .ino = 11, .off = -1 };
    notified(m, FUSE_NOTIFY_INVAL_INODE, &ii, sizeof(ii));
    CHECK(!answered(m, 11, "a") && answered(m, 12, "a"));
    char arg[16] = { 0 };
    forward(m, FUSE_FORGET, 12, arg, sizeof(arg), NULL, 0);
    CHECK(!answered(m, 12, "a") && answered(m, 13, "a"));
    forward(m, 4242, 13, arg, sizeof(arg), NULL, 0); /* an opcode the relay does not know */
    CHECK(!answered(m, 13, "a") && answered(m, 14, "a"));
    forward(m, FUSE_READ, 14, arg, sizeof(arg), NULL, 0);
    forward(m, FUSE_UNLINK, 14, arg, sizeof(arg), "a", 2);
    CHECK(answered(m, 14, "b"));
    notified(m, 8 /* an epoch: about every node */, NULL, 0);
    CHECK(!answered(m, 14, "b") && !answered(m, 15, "b"));
    missing_names_free(m);
}

static void test_a_note_after_any_notification_is_not_taken(void)
{
    struct missing_names *m = missing_names_new();
    struct fuse_mkdir_in in = { .mode = 0755 };
    uint64_t unique = forward(m, FUSE_MKDIR, 1, &in, sizeof(in), "d", 2);
    inval_entry(m, 10); /* may be about the new one, ahead of its note */
    note(m, 10, unique);
    missing_names_replied(m, unique);
    CHECK(!answered(m, 10, "a"));
    /* a note for no MKDIR in flight is dropped too */
    note(m, 20, 12345);
    CHECK(!answered(m, 20, "a"));
    /* a malformed one is dropped */
    unsigned char junk[sizeof(struct fuse_out_header) + 4] = { 0 };
    missing_names_note(m, junk, sizeof(junk));
    missing_names_note(NULL, junk, sizeof(junk));
    missing_names_free(m);
}

static void test_a_full_name_table_starts_over(void)
{
    struct missing_names *m = missing_names_new();
    mkdir_in(m, 1, "d", 10, true);
    char name[16];
    for (int i = 0; i < 65536; i++) {
        snprintf(name, sizeof(name), "f%d", i);
        create(m, FUSE_CREATE, 10, name);
    }
    CHECK(answered(m, 10, "g"));
    create(m, FUSE_CREATE, 10, "one-more"); /* the table is cleared */
    CHECK(!answered(m, 10, "g"));
    CHECK(!answered(m, 10, "f0"));
    missing_names_free(m);
}

/* A MKDIR of DIR in PARENT with a bounded note (FSB_EMPTY_DIR_BOUNDED:
 * no pushes) of NSEC nanoseconds. */
static void bounded_mkdir(struct missing_names *m, uint64_t parent, uint64_t dir, uint32_t nsec)
{
    struct fuse_mkdir_in in = { .mode = 0755 };
    uint64_t unique = forward(m, FUSE_MKDIR, parent, &in, sizeof(in), "b", 2);
    struct fsb_empty_dir_note n = { .nodeid = dir, .unique = unique, .entry_valid_nsec = nsec,
                                    .flags = FSB_EMPTY_DIR_BOUNDED };
    unsigned char msg[FSB_EMPTY_DIR_NOTE_MSG_SIZE];
    fsb_empty_dir_note_encode(&n, msg);
    missing_names_note(m, msg, sizeof(msg));
    missing_names_replied(m, unique);
}

static void test_a_bounded_note_holds_for_its_timeout_only(void)
{
    struct missing_names *m = missing_names_new();
    bounded_mkdir(m, 1, 70, 200000000); /* 0.2 s */
    struct fuse_in_header ih = { .opcode = FUSE_LOOKUP, .nodeid = 70, .unique = 1 };
    struct fuse_entry_out out = { .nodeid = 99 };
    CHECK(missing_names_answer(m, &ih, "x", 2, &out));
    /* the kernel may keep the entry for what is left of the note's time */
    CHECK(out.nodeid == 0 && out.entry_valid == 0 && out.entry_valid_nsec > 0 &&
          out.entry_valid_nsec <= 200000000);
    create(m, FUSE_CREATE, 70, "mine");
    CHECK(!missing_names_answer(m, &ih, "mine", 5, &out));
    struct timespec wait = { .tv_nsec = 250000000 };
    nanosleep(&wait, NULL);
    CHECK(!missing_names_answer(m, &ih, "x", 2, &out)); /* run out: to the host */
    missing_names_free(m);
}

static void test_a_bounded_note_of_no_time_is_not_taken(void)
{
    struct missing_names *m = missing_names_new();
    bounded_mkdir(m, 1, 71, 0);
    struct fuse_in_header ih = { .opcode = FUSE_LOOKUP, .nodeid = 71, .unique = 1 };
    struct fuse_entry_out out;
    CHECK(!missing_names_answer(m, &ih, "x", 2, &out));
    missing_names_free(m);
}

static void test_a_note_with_unknown_flags_is_dropped(void)
{
    struct fsb_empty_dir_note n = { .nodeid = 70, .unique = 4, .flags = 0x2 }, back;
    unsigned char msg[FSB_EMPTY_DIR_NOTE_MSG_SIZE];
    fsb_empty_dir_note_encode(&n, msg);
    CHECK(!fsb_empty_dir_note_decode(msg, sizeof(msg), &back));
    n.flags = FSB_EMPTY_DIR_BOUNDED;
    fsb_empty_dir_note_encode(&n, msg);
    CHECK(fsb_empty_dir_note_decode(msg, sizeof(msg), &back) && back.flags == n.flags);
}

int main(void)
{
    static const struct unit_test tests[] = {
        TEST(test_a_noted_directory_has_no_names_but_its_own),
        TEST(test_a_rename_into_it_names_the_target),
        TEST(test_notifications_forgets_and_unknown_requests_end_it),
        TEST(test_a_note_after_any_notification_is_not_taken),
        TEST(test_a_full_name_table_starts_over),
        TEST(test_a_bounded_note_holds_for_its_timeout_only),
        TEST(test_a_note_with_unknown_flags_is_dropped),
        TEST(test_a_bounded_note_of_no_time_is_not_taken),
    };
    return RUN_TESTS(tests);
}
