/*
 * test_flush_shortcut.c - which FLUSHes the relay answers itself
 * (mount/flush_shortcut.h), fed the requests and replies it would see, and
 * the table beneath it (common/u64_table.h): removal keeps every other key
 * reachable, the limit holds.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <string.h>

#include "common/u64_table.h"
#include "mount/flush_shortcut.h"
#include "unit_check.h"

static uint64_t next_unique = 2;

/* What the relay does with a request: answer it, or forward it. */
static bool relayed(struct flush_shortcut *f, const struct fuse_in_header *ih, const void *arg,
                    size_t len)
{
    if (flush_shortcut_answers(f, ih, arg, len))
        return true;
    flush_shortcut_forwarding(f, ih, arg, len);
    return false;
}

static struct fuse_in_header header(uint32_t opcode)
{
    struct fuse_in_header ih = { .opcode = opcode, .unique = next_unique };
    next_unique += 2;
    return ih;
}

/* An OPEN with FLAGS, answered with handle FH. */
static void opened(struct flush_shortcut *f, uint32_t flags, uint64_t fh)
{
    struct fuse_in_header ih = header(FUSE_OPEN);
    struct fuse_open_in in = { .flags = flags };
    CHECK(!relayed(f, &ih, &in, sizeof(in)));
    struct fuse_out_header oh = { .unique = ih.unique };
    struct fuse_open_out out = { .fh = fh };
    flush_shortcut_reply(f, &oh, &out, sizeof(out));
}

static bool flush_answered(struct flush_shortcut *f, uint64_t fh, uint64_t owner)
{
    struct fuse_in_header ih = header(FUSE_FLUSH);
    struct fuse_flush_in in = { .fh = fh, .lock_owner = owner };
    return relayed(f, &ih, &in, sizeof(in));
}

static void released(struct flush_shortcut *f, uint64_t fh)
{
    struct fuse_in_header ih = header(FUSE_RELEASE);
    struct fuse_release_in in = { .fh = fh };
    CHECK(!relayed(f, &ih, &in, sizeof(in)));
}

static void locked(struct flush_shortcut *f, uint64_t owner, uint32_t lk_flags)
{
    struct fuse_in_header ih = header(FUSE_SETLKW);
    struct fuse_lk_in in = { .owner = owner, .lk_flags = lk_flags, .lk.type = F_RDLCK };
    CHECK(!relayed(f, &ih, &in, sizeof(in)));
}

static void test_read_only_handles_of_non_lockers_only(void)
{
    struct flush_shortcut *f = flush_shortcut_new(false);
    opened(f, O_RDONLY, 0); /* handle 0 is a handle like any other */
    opened(f, O_RDWR, 1);
    opened(f, O_WRONLY | O_APPEND, 2);
    CHECK(flush_answered(f, 0, 7));
    CHECK(!flush_answered(f, 1, 7));
    CHECK(!flush_answered(f, 2, 7));
    CHECK(!flush_answered(f, 9, 7)); /* never opened here (CREATE, another relay) */
    locked(f, 8, 0);
    CHECK(!flush_answered(f, 0, 8)); /* owner 8 may hold locks on this file */
    CHECK(flush_answered(f, 0, 7));
    locked(f, 7, FUSE_LK_FLOCK);     /* flock: the open file's, gone at RELEASE */
    CHECK(flush_answered(f, 0, 7));
    released(f, 0);
    CHECK(!flush_answered(f, 0, 7)); /* the number may come back writable */
    flush_shortcut_free(f);
}

static void test_failed_opens_and_short_arguments(void)
{
    struct flush_shortcut *f = flush_shortcut_new(false);
    struct fuse_in_header ih = header(FUSE_OPEN);
    struct fuse_open_in in = { .flags = O_RDONLY };
    CHECK(!relayed(f, &ih, &in, sizeof(in)));
    struct fuse_out_header oh = { .unique = ih.unique, .error = -EACCES };
    struct fuse_open_out out = { .fh = 5 };
    flush_shortcut_reply(f, &oh, &out, sizeof(out));
    CHECK(!flush_answered(f, 5, 1));
    opened(f, O_RDONLY, 6);
    struct fuse_in_header fl = header(FUSE_FLUSH);
    struct fuse_flush_in fin = { .fh = 6 };
    CHECK(!relayed(f, &fl, &fin, sizeof(fin) - 1));
    CHECK(!relayed(NULL, &fl, &fin, sizeof(fin)));
    CHECK(flush_answered(f, 6, 1));
    /* A RELEASE that cannot be read may free a number the relay still
     * takes for read-only: from then on nothing is shortcut. */
    struct fuse_in_header rel = header(FUSE_RELEASE);
    struct fuse_release_in rin = { .fh = 6 };
    CHECK(!relayed(f, &rel, &rin, sizeof(rin) - 1));
    opened(f, O_RDONLY, 7);
    CHECK(!flush_answered(f, 6, 1) && !flush_answered(f, 7, 1));
    flush_shortcut_free(f);
}

static void test_too_many_lockers_turn_it_off(void)
{
    struct flush_shortcut *f = flush_shortcut_new(false);
    opened(f, O_RDONLY, 3);
    for (uint64_t owner = 100; owner < 100 + 5000; owner++)
        locked(f, owner, 0);
    CHECK(!flush_answered(f, 3, 1)); /* owner 1 may be one that did not fit */
    flush_shortcut_free(f);
}

/* QUIET_CLOSE: any handle, written or never seen (a CREATE's), of an
 * owner that never locked; owners that did, and an untrusted table, as
 * without it. */
static void test_quiet_close_answers_any_handle_of_non_lockers(void)
{
    struct flush_shortcut *f = flush_shortcut_new(true);
    opened(f, O_RDWR, 1);
    opened(f, O_WRONLY | O_APPEND, 2);
    CHECK(flush_answered(f, 1, 7) && flush_answered(f, 2, 7));
    CHECK(flush_answered(f, 9, 7)); /* a CREATE's handle: never an OPEN */
    locked(f, 8, 0);
    CHECK(!flush_answered(f, 1, 8) && !flush_answered(f, 9, 8));
    locked(f, 7, FUSE_LK_FLOCK); /* flock: goes with RELEASE, not FLUSH */
    CHECK(flush_answered(f, 1, 7));
    released(f, 1);
    CHECK(flush_answered(f, 1, 7)); /* the number may come back: any will do */
    struct fuse_in_header lk = header(FUSE_SETLK);
    struct fuse_lk_in lin = { .owner = 9 };
    CHECK(!relayed(f, &lk, &lin, sizeof(lin) - 1)); /* whose lock? unknown */
    CHECK(!flush_answered(f, 1, 7));
    flush_shortcut_free(f);
}

static void test_table_removal_keeps_the_rest_reachable(void)
{
    struct fsb_u64_slot slots[64];
    struct fsb_u64_table t;
    fsb_u64_table_init(&t, slots, 64);
    for (uint64_t k = 0; k < 32; k++)
        CHECK(fsb_u64_table_add(&t, k * 64, (void *)(uintptr_t)(k + 1)) == 0);
    CHECK(fsb_u64_table_add(&t, 5, NULL) == -ENOSPC);
    CHECK(fsb_u64_table_add(&t, 64, NULL) == -EEXIST);
    for (uint64_t k = 0; k < 32; k += 2) {
        void *v;
        CHECK(fsb_u64_table_remove(&t, k * 64, &v) && v == (void *)(uintptr_t)(k + 1));
    }
    for (uint64_t k = 0; k < 32; k++)
        CHECK((fsb_u64_table_find(&t, k * 64) != NULL) == (k % 2 == 1));
    CHECK(t.count == 16 && !fsb_u64_table_remove(&t, 0, NULL));
}

int main(void)
{
    static const struct unit_test tests[] = {
        TEST(test_read_only_handles_of_non_lockers_only),
        TEST(test_failed_opens_and_short_arguments),
        TEST(test_too_many_lockers_turn_it_off),
        TEST(test_quiet_close_answers_any_handle_of_non_lockers),
        TEST(test_table_removal_keeps_the_rest_reachable),
    };
    return RUN_TESTS(tests);
}
