/*
 * test_attr_notes.c - which directory GETATTRs the relay answers itself
 * (mount/attr_notes.h), fed the requests, replies and host messages it
 * would see in the orders the stream may bring them.
 */
#include <linux/fuse.h>
#include <string.h>
#include <unistd.h>

#include "mount/attr_notes.h"
#include "transport/stream_hello.h"
#include "unit_check.h"

#define DIR_NODE 7
#define OTHER_DIR 9

static uint64_t next_unique = 2;

/* A request for NODEID forwarded to the host; its unique. */
static uint64_t forward(struct attr_notes *a, uint32_t opcode, uint64_t nodeid, const void *arg,
                        size_t len)
{
    struct fuse_in_header ih = { .opcode = opcode, .unique = next_unique, .nodeid = nodeid };
    next_unique += 2;
    attr_notes_forwarding(a, &ih, arg, len);
    return ih.unique;
}

static uint64_t unlink_in(struct attr_notes *a, uint64_t dir)
{
    return forward(a, FUSE_UNLINK, dir, "f", 2);
}

/* The host's note about DIR after request UNIQUE, mode MODE, timeout T s. */
static bool note(struct attr_notes *a, uint64_t dir, uint64_t unique, uint32_t mode, uint64_t t)
{
    struct fsb_attr_note n = { .nodeid = dir, .unique = unique,
                               .attr = { .attr_valid = t, .attr.mode = mode } };
    unsigned char msg[FSB_ATTR_NOTE_MSG_SIZE];
    fsb_attr_note_encode(&n, msg);
    return attr_notes_host_message(a, msg, sizeof(msg));
}

/* The host's INVAL_INODE of NODEID's attributes: for the kernel, not the relay. */
static bool host_inval(struct attr_notes *a, uint64_t nodeid)
{
    struct {
        struct fuse_out_header oh;
        struct fuse_notify_inval_inode_out in;
    } inval = { .oh = { .len = sizeof(inval), .error = FUSE_NOTIFY_INVAL_INODE },
                .in = { .ino = nodeid, .off = -1 } };
    return attr_notes_host_message(a, &inval, sizeof(inval));
}

/* The kernel's GETATTR of NODEID: answered (with *mode) or forwarded. */
static bool answered(struct attr_notes *a, uint64_t nodeid, uint32_t *mode)
{
    struct fuse_in_header ih = { .opcode = FUSE_GETATTR, .unique = next_unique, .nodeid = nodeid };
    next_unique += 2;
    struct fuse_attr_out out;
    if (!attr_notes_answer(a, &ih, &out))
        return false;
    if (mode)
        *mode = out.attr.mode;
    return true;
}

static void test_a_note_answers_the_next_getattr_once(void)
{
    struct attr_notes *a = attr_notes_new();
    uint32_t mode = 0;
    CHECK(!answered(a, DIR_NODE, NULL));
    uint64_t u = unlink_in(a, DIR_NODE);
    CHECK(note(a, DIR_NODE, u, 040755, 1));
    attr_notes_replied(a, u);
    CHECK(answered(a, DIR_NODE, &mode) && mode == 040755);
    CHECK(!answered(a, DIR_NODE, NULL)); /* used up */
    CHECK(!answered(a, OTHER_DIR, NULL));
    attr_notes_free(a);
}

static void test_other_changes_in_flight_void_the_note(void)
{
    struct attr_notes *a = attr_notes_new();
    /* one forwarded before, still in flight: it may run after the stat */
    uint64_t before = forward(a, FUSE_SETATTR, DIR_NODE, NULL, 0);
    uint64_t u = unlink_in(a, DIR_NODE);
    note(a, DIR_NODE, u, 040700, 1);
    attr_notes_replied(a, u);
    attr_notes_replied(a, before);
    CHECK(!answered(a, DIR_NODE, NULL));
    /* one forwarded after, before the note came */
    u = unlink_in(a, DIR_NODE);
    uint64_t after = forward(a, FUSE_MKDIR, DIR_NODE, "d", 2);
    note(a, DIR_NODE, u, 040700, 1);
    attr_notes_replied(a, u);
    attr_notes_replied(a, after);
    CHECK(!answered(a, DIR_NODE, NULL));
    /* one forwarded after the note came drops it */
    u = unlink_in(a, DIR_NODE);
    note(a, DIR_NODE, u, 040700, 1);
    attr_notes_replied(a, u);
    attr_notes_replied(a, forward(a, FUSE_SETXATTR, DIR_NODE, NULL, 0));
    CHECK(!answered(a, DIR_NODE, NULL));
    /* a note nobody asked for, about a request not in flight */
    note(a, DIR_NODE, 12345, 040700, 1);
    CHECK(!answered(a, DIR_NODE, NULL));
    attr_notes_free(a);
}

static void test_host_notifications_forgets_and_renames_drop_notes(void)
{
    struct attr_notes *a = attr_notes_new();
    uint64_t u = unlink_in(a, DIR_NODE);
    note(a, DIR_NODE, u, 040755, 100);
    attr_notes_replied(a, u);
    CHECK(!host_inval(a, DIR_NODE)); /* for the kernel */
    CHECK(!answered(a, DIR_NODE, NULL));

    u = unlink_in(a, DIR_NODE);
    note(a, DIR_NODE, u, 040755, 100);
    attr_notes_replied(a, u);
    forward(a, FUSE_FORGET, DIR_NODE, NULL, 0);
    CHECK(!answered(a, DIR_NODE, NULL));

    u = unlink_in(a, DIR_NODE);
    note(a, DIR_NODE, u, 040755, 100);
    attr_notes_replied(a, u);
    uint64_t newdir = OTHER_DIR + 100;
    attr_notes_replied(a, forward(a, FUSE_RENAME, OTHER_DIR, &newdir, sizeof(newdir)));
    CHECK(!answered(a, DIR_NODE, NULL)); /* a rename drops every note */
    attr_notes_free(a);
}

/* What spoils a note may come before the note itself: a host notification
 * on another connection, a rename or rmdir of a directory whose own
 * change is in flight, a listing. */
static void test_what_comes_before_the_note_spoils_it_too(void)
{
    struct attr_notes *a = attr_notes_new();
    uint64_t u = unlink_in(a, DIR_NODE);
    CHECK(!host_inval(a, DIR_NODE));
    note(a, DIR_NODE, u, 040755, 100);
    attr_notes_replied(a, u);
    CHECK(!answered(a, DIR_NODE, NULL));

    uint64_t newdir = OTHER_DIR + 100;
    u = unlink_in(a, DIR_NODE); /* a change inside DIR_NODE, then DIR_NODE moves */
    attr_notes_replied(a, forward(a, FUSE_RENAME2, OTHER_DIR, &newdir, sizeof(newdir)));
    note(a, DIR_NODE, u, 040755, 100);
    attr_notes_replied(a, u);
    CHECK(!answered(a, DIR_NODE, NULL));

    u = unlink_in(a, DIR_NODE); /* then DIR_NODE goes */
    attr_notes_replied(a, forward(a, FUSE_RMDIR, OTHER_DIR, "d", 2));
    note(a, DIR_NODE, u, 040755, 100);
    attr_notes_replied(a, u);
    CHECK(!answered(a, DIR_NODE, NULL));

    u = unlink_in(a, DIR_NODE);
    note(a, DIR_NODE, u, 040755, 100);
    attr_notes_replied(a, u);
    u = forward(a, FUSE_READDIRPLUS, DIR_NODE, NULL, 0); /* moves the atime */
    CHECK(!answered(a, DIR_NODE, NULL));
    /* and the listing's own note, once it comes, is the latest word */
    note(a, DIR_NODE, u, 040755, 100);
    attr_notes_replied(a, u);
    CHECK(answered(a, DIR_NODE, NULL));
    attr_notes_free(a);
}

static void test_a_note_lives_as_long_as_its_timeout(void)
{
    struct attr_notes *a = attr_notes_new();
    uint64_t u = unlink_in(a, DIR_NODE);
    note(a, DIR_NODE, u, 040755, 0); /* a reply that may not be cached */
    attr_notes_replied(a, u);
    CHECK(!answered(a, DIR_NODE, NULL));
    u = unlink_in(a, DIR_NODE);
    struct fsb_attr_note n = { .nodeid = DIR_NODE, .unique = u,
                               .attr = { .attr_valid = 0, .attr_valid_nsec = 20000000 } };
    unsigned char msg[FSB_ATTR_NOTE_MSG_SIZE];
    fsb_attr_note_encode(&n, msg);
    attr_notes_host_message(a, msg, sizeof(msg));
    attr_notes_replied(a, u);
    usleep(30000); /* past its 20 ms */
    CHECK(!answered(a, DIR_NODE, NULL));
    attr_notes_free(a);
}

static void test_notes_never_reach_the_kernel(void)
{
    unsigned char msg[FSB_ATTR_NOTE_MSG_SIZE];
    struct fsb_attr_note n = { .nodeid = DIR_NODE };
    fsb_attr_note_encode(&n, msg);
    CHECK(attr_notes_host_message(NULL, msg, sizeof(msg))); /* dir_attrs=host */
    struct attr_notes *a = attr_notes_new();
    CHECK(attr_notes_host_message(a, msg, sizeof(msg) - 1)); /* malformed: dropped */
    attr_notes_free(a);
}

int main(void)
{
    static const struct unit_test tests[] = {
        TEST(test_a_note_answers_the_next_getattr_once),
        TEST(test_other_changes_in_flight_void_the_note),
        TEST(test_host_notifications_forgets_and_renames_drop_notes),
        TEST(test_what_comes_before_the_note_spoils_it_too),
        TEST(test_a_note_lives_as_long_as_its_timeout),
        TEST(test_notes_never_reach_the_kernel),
    };
    return RUN_TESTS(tests);
}
