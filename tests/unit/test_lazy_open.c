/*
 * test_lazy_open.c - which OPENs and RELEASEs the relay answers itself
 * (mount/lazy_open.h), fed the requests the kernel would send.
 */
#include <fcntl.h>
#include <linux/fuse.h>
#include <string.h>

#include "mount/lazy_open.h"
#include "transport/stream_hello.h"
#include "unit_check.h"

#define KERNEL_O_LARGEFILE 0100000
#define KERNEL_FMODE_EXEC 040

static enum lazy_answer open_with(struct lazy_open *lo, uint32_t flags, uint32_t open_flags,
                                  struct fuse_open_out *out)
{
    struct fuse_in_header ih = { .opcode = FUSE_OPEN, .unique = 2 };
    struct fuse_open_in in = { .flags = flags, .open_flags = open_flags };
    return lazy_open_answers(lo, &ih, &in, sizeof(in), out);
}

static enum lazy_answer release(struct lazy_open *lo, uint64_t fh)
{
    struct fuse_in_header ih = { .opcode = FUSE_RELEASE, .unique = 4 };
    struct fuse_release_in in = { .fh = fh };
    return lazy_open_answers(lo, &ih, &in, sizeof(in), NULL);
}

/* Request OPCODE with argument IN (LEN bytes) goes to the host, as the
 * relay sends it. */
static void forward(struct lazy_open *lo, uint32_t opcode, const void *in, size_t len)
{
    struct fuse_in_header ih = { .opcode = opcode, .unique = 6 };
    CHECK(lazy_open_answers(lo, &ih, in, len, NULL) == LAZY_FORWARD);
    lazy_open_forwarding(lo, &ih, in, len);
}

static void read_with(struct lazy_open *lo, uint64_t fh)
{
    struct fuse_read_in in = { .fh = fh, .size = 4096 };
    forward(lo, FUSE_READ, &in, sizeof(in));
}

static void test_plain_read_only_opens_only(void)
{
    struct lazy_open *lo = lazy_open_new(FOPEN_KEEP_CACHE);
    struct fuse_open_out out;
    CHECK(open_with(lo, O_RDONLY | KERNEL_O_LARGEFILE | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK,
                    0, &out) == LAZY_OPENED);
    CHECK((out.fh & FSB_LAZY_FH) && out.open_flags == FOPEN_KEEP_CACHE);
    uint64_t first = out.fh;
    CHECK(open_with(lo, O_RDONLY, 0, &out) == LAZY_OPENED && out.fh != first);
    static const uint32_t refused[] = { O_WRONLY, O_RDWR, O_RDONLY | O_TRUNC,
                                        O_RDONLY | O_DIRECT, O_RDONLY | O_SYNC,
                                        O_RDONLY | O_DSYNC, O_RDONLY | O_NOATIME,
                                        O_RDONLY | KERNEL_FMODE_EXEC, O_RDONLY | O_APPEND,
                                        O_RDONLY | O_PATH };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
        CHECK(open_with(lo, refused[i], 0, &out) == LAZY_FORWARD);
    CHECK(open_with(lo, O_RDONLY, FUSE_OPEN_KILL_SUIDGID, &out) == LAZY_FORWARD);
    struct fuse_in_header dir = { .opcode = FUSE_OPENDIR };
    struct fuse_open_in in = { .flags = O_RDONLY };
    CHECK(lazy_open_answers(lo, &dir, &in, sizeof(in), &out) == LAZY_FORWARD);
    struct fuse_in_header ih = { .opcode = FUSE_OPEN };
    CHECK(lazy_open_answers(lo, &ih, &in, sizeof(in) - 1, &out) == LAZY_FORWARD);
    CHECK(lazy_open_answers(NULL, &ih, &in, sizeof(in), &out) == LAZY_FORWARD);
    lazy_open_free(lo);
}

static void test_releases_of_handles_the_host_saw_go_there(void)
{
    struct lazy_open *lo = lazy_open_new(0);
    struct fuse_open_out a, b;
    CHECK(open_with(lo, O_RDONLY, 0, &a) == LAZY_OPENED);
    CHECK(open_with(lo, O_RDONLY, 0, &b) == LAZY_OPENED);
    read_with(lo, a.fh);
    CHECK(release(lo, a.fh) == LAZY_FORWARD);
    CHECK(release(lo, b.fh) == LAZY_RELEASED);
    CHECK(release(lo, 5) == LAZY_FORWARD); /* the host's own handle */
    /* a copy's source is carried too, and its destination */
    struct fuse_copy_file_range_in in = { .fh_in = FSB_LAZY_FH | 77, .fh_out = 3 };
    forward(lo, FUSE_COPY_FILE_RANGE, &in, sizeof(in));
    CHECK(release(lo, FSB_LAZY_FH | 77) == LAZY_FORWARD);
    lazy_open_free(lo);
}

/* fstat, a close with flush=host, ftruncate (EINVAL in the kernel, but a
 * guest may send it) of a lazy fd: the host answers them from the node or
 * refuses them and opens nothing, so the RELEASE stays here */
static void test_getattr_flush_and_setattr_carry_no_handle(void)
{
    struct lazy_open *lo = lazy_open_new(0);
    struct fuse_open_out a;
    CHECK(open_with(lo, O_RDONLY, 0, &a) == LAZY_OPENED);
    struct fuse_getattr_in getattr = { .getattr_flags = FUSE_GETATTR_FH, .fh = a.fh };
    struct fuse_flush_in flush = { .fh = a.fh, .lock_owner = 9 };
    struct fuse_setattr_in setattr = { .valid = FATTR_FH | FATTR_SIZE, .fh = a.fh };
    forward(lo, FUSE_GETATTR, &getattr, sizeof(getattr));
    forward(lo, FUSE_FLUSH, &flush, sizeof(flush));
    forward(lo, FUSE_SETATTR, &setattr, sizeof(setattr));
    CHECK(release(lo, a.fh) == LAZY_RELEASED);
    lazy_open_free(lo);
}

static void test_a_full_table_forwards_every_release(void)
{
    struct lazy_open *lo = lazy_open_new(0);
    for (uint64_t i = 1; i <= 5000; i++)
        read_with(lo, FSB_LAZY_FH | i);
    CHECK(release(lo, FSB_LAZY_FH | 999999) == LAZY_FORWARD);
    lazy_open_free(lo);
}

int main(void)
{
    static const struct unit_test tests[] = {
        TEST(test_plain_read_only_opens_only),
        TEST(test_releases_of_handles_the_host_saw_go_there),
        TEST(test_getattr_flush_and_setattr_carry_no_handle),
        TEST(test_a_full_table_forwards_every_release),
    };
    return RUN_TESTS(tests);
}
