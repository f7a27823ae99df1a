/*
 * test_init_filter.c - the relay's edits to the INIT exchange
 * (mount/init_filter.h) that decide open=none: what the kernel then sees
 * granted, and when it is not granted at all; and FUSE_ABORT_ERROR.
 */
#include <errno.h>
#include <linux/fuse.h>
#include <string.h>

#include "mount/init_filter.h"
#include "unit_check.h"

#define MAX_FRAME (1u << 20)
#define HOST_GRANTS (FUSE_POSIX_LOCKS | FUSE_FLOCK_LOCKS | FUSE_ATOMIC_O_TRUNC | FUSE_ASYNC_READ)

struct init_request {
    struct fuse_in_header ih;
    struct fuse_init_in in;
};
struct init_reply {
    struct fuse_out_header oh;
    struct fuse_init_out out;
};

/* The kernel offers OFFERED, the host grants GRANTED: what the kernel
 * gets.  F: the filter, its want_no_open set by the caller. */
static uint32_t exchange(struct init_filter *f, uint32_t offered, uint32_t granted)
{
    struct init_request req = { .ih = { .opcode = FUSE_INIT, .len = sizeof(req) },
                                .in = { .major = 7, .minor = 38, .flags = offered } };
    struct init_reply rep = { .oh = { .len = sizeof(rep), .unique = 2 },
                              .out = { .major = 7, .minor = 38, .flags = granted,
                                       .max_write = 1 << 17 } };
    init_filter_request(f, &req, sizeof(req));
    CHECK(init_filter_reply(f, &rep, sizeof(rep), MAX_FRAME) == 0);
    return rep.out.flags;
}

static const uint32_t kernel_offer = HOST_GRANTS | FUSE_NO_OPEN_SUPPORT | FUSE_WRITEBACK_CACHE;

static void test_open_none_takes_locks_and_atomic_trunc_from_the_kernel(void)
{
    struct init_filter f = { .want_no_open = true };
    uint32_t got = exchange(&f, kernel_offer, HOST_GRANTS);
    CHECK(f.no_open);
    CHECK(!(got & (FUSE_POSIX_LOCKS | FUSE_FLOCK_LOCKS | FUSE_ATOMIC_O_TRUNC)));
    CHECK(got & FUSE_ASYNC_READ); /* the rest as the host said */
}

static void test_without_open_none_the_host_grants_stand(void)
{
    struct init_filter f = { 0 };
    CHECK(exchange(&f, kernel_offer, HOST_GRANTS) == HOST_GRANTS);
    CHECK(!f.no_open);
}

static void test_a_kernel_without_no_open_support_gets_no_open_none(void)
{
    struct init_filter f = { .want_no_open = true };
    CHECK(exchange(&f, kernel_offer & ~(uint32_t)FUSE_NO_OPEN_SUPPORT, HOST_GRANTS) ==
          HOST_GRANTS);
    CHECK(!f.no_open);
}

static void test_a_writeback_cache_rules_open_none_out(void)
{
    struct init_filter f = { .want_no_open = true };
    uint32_t got = exchange(&f, kernel_offer, HOST_GRANTS | FUSE_WRITEBACK_CACHE);
    CHECK(f.writeback && !f.no_open);
    CHECK(got & FUSE_POSIX_LOCKS);
}

static void test_an_abort_is_told_from_an_unmount(void)
{
    struct init_filter f = { 0 };
    CHECK(exchange(&f, kernel_offer | FUSE_ABORT_ERROR, HOST_GRANTS) ==
          (HOST_GRANTS | FUSE_ABORT_ERROR));
    CHECK(exchange(&f, kernel_offer, HOST_GRANTS) == HOST_GRANTS); /* not offered */
}

static void test_a_refused_init_decides_nothing(void)
{
    struct init_filter f = { .want_no_open = true };
    struct init_request req = { .ih = { .opcode = FUSE_INIT, .len = sizeof(req) },
                                .in = { .major = 7, .minor = 38, .flags = kernel_offer } };
    struct init_reply rep = { .oh = { .len = sizeof(struct fuse_out_header), .error = -EPROTO } };
    init_filter_request(&f, &req, sizeof(req));
    CHECK(init_filter_reply(&f, &rep, sizeof(rep.oh), MAX_FRAME) == -EPROTO);
    CHECK(!f.no_open);
}

/* The offer the host sees: FUSE_NO_OPEN_SUPPORT only from a relay that
 * wants open=none (the host then bounds created files' handles,
 * engine/created_handles.h); the filter remembers the kernel's own. */
static uint32_t offer_to_host(bool want_no_open)
{
    struct init_filter f = { .want_no_open = want_no_open };
    struct init_request req = { .ih = { .opcode = FUSE_INIT, .len = sizeof(req) },
                                .in = { .major = 7, .minor = 38, .flags = kernel_offer } };
    init_filter_request(&f, &req, sizeof(req));
    CHECK(f.offered == kernel_offer);
    return req.in.flags;
}

static void test_the_host_is_offered_no_open_only_for_open_none(void)
{
    CHECK(offer_to_host(true) & FUSE_NO_OPEN_SUPPORT);
    CHECK(!(offer_to_host(false) & FUSE_NO_OPEN_SUPPORT));
    CHECK((offer_to_host(false) | FUSE_NO_OPEN_SUPPORT) == offer_to_host(true));
}

int main(void)
{
    static const struct unit_test tests[] = {
        TEST(test_open_none_takes_locks_and_atomic_trunc_from_the_kernel),
        TEST(test_without_open_none_the_host_grants_stand),
        TEST(test_a_kernel_without_no_open_support_gets_no_open_none),
        TEST(test_a_writeback_cache_rules_open_none_out),
        TEST(test_an_abort_is_told_from_an_unmount),
        TEST(test_a_refused_init_decides_nothing),
        TEST(test_the_host_is_offered_no_open_only_for_open_none),
    };
    return RUN_TESTS(tests);
}
