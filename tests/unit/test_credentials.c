/*
 * test_credentials.c - backend/passthrough/credentials.h on the calling
 * thread itself: entering a caller's credentials and leaving them puts the
 * thread back exactly (fsuid, fsgid, CAP_FSETID), on success and on every
 * refusal, so that a request cannot leave part of its identity to the next
 * request the thread serves.  Needs root (the daemon switches ids only when
 * it is root): skipped (exit 77) otherwise.
 */
#include "unit_check.h"
#include "backend/passthrough/credentials.h"

#include <errno.h>
#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SKIP 77

static long fsuid_now(void)
{
    return syscall(SYS_setfsuid, -1);
}

static long fsgid_now(void)
{
    return syscall(SYS_setfsgid, -1);
}

static bool has_fsetid(void)
{
    struct __user_cap_header_struct head = { .version = _LINUX_CAPABILITY_VERSION_3 };
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    return syscall(SYS_capget, &head, data) == 0 &&
           (data[0].effective & (1u << CAP_FSETID)) != 0;
}

/* The daemon's own state, which every cred_leave() must restore. */
static bool at_daemon_state(void)
{
    return fsuid_now() == 0 && fsgid_now() == 0 && has_fsetid();
}

static void test_root_without_fsetid_enters_and_leaves(void)
{
    struct fsb_ctx root = { .uid = 0, .gid = 0, .kill_suidgid = true };
    CHECK(cred_enter(&root, true) == 0);
    CHECK(!has_fsetid());
    cred_leave(true);
    CHECK(at_daemon_state());
}

static void test_user_enters_and_leaves(void)
{
    struct fsb_ctx user = { .uid = 1000, .gid = 1001, .kill_suidgid = true };
    CHECK(cred_enter(&user, true) == 0);
    CHECK(fsuid_now() == 1000 && fsgid_now() == 1001);
    cred_leave(true);
    CHECK(at_daemon_state());
}

/* (gid_t)-1 cannot be set (setfsgid(-1) only reads): a hostile guest can
 * send it.  The refusal must not keep CAP_FSETID dropped for root. */
static void test_refused_gid_restores_fsetid(void)
{
    struct fsb_ctx bad = { .uid = 0, .gid = (uint32_t)-1, .kill_suidgid = true };
    CHECK(cred_enter(&bad, true) == -EPERM);
    CHECK(at_daemon_state());
}

static void test_refused_uid_restores_the_gid(void)
{
    struct fsb_ctx bad = { .uid = (uint32_t)-1, .gid = 1001, .kill_suidgid = true };
    CHECK(cred_enter(&bad, true) == -EPERM);
    CHECK(at_daemon_state());
    /* And the next caller, root again, starts from the daemon's ids. */
    struct fsb_ctx root = { .uid = 0, .gid = 0 };
    CHECK(cred_enter(&root, true) == 0);
    CHECK(at_daemon_state());
    cred_leave(true);
}

int main(void)
{
    if (!cred_can_switch() || !has_fsetid()) {
        printf("skip: needs root with CAP_FSETID (the daemon switches ids only then)\n");
        return SKIP;
    }
    static const struct unit_test tests[] = {
        TEST(test_root_without_fsetid_enters_and_leaves),
        TEST(test_user_enters_and_leaves),
        TEST(test_refused_gid_restores_fsetid),
        TEST(test_refused_uid_restores_the_gid),
    };
    return run_tests(tests, sizeof(tests) / sizeof(tests[0]));
}
