/*
 * test_engine.c - the engine's validation of guest input, request by
 * request: what a hostile or buggy guest can send, and the errno it gets.
 * Runs the real engine and passthrough backend on a scratch directory.
 */
#include "unit_check.h"
#include "engine_harness.h"
#include "transport/stream_hello.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>


#define CHECK_ERR(h, want)                                                           \
    do {                                                                             \
        int got_ = harness_error(h);                                                 \
        if (got_ != (want)) {                                                        \
            printf("    %s:%d: reply error %d, expected %d (%s)\n", __FILE__, __LINE__, \
                   got_, (want), #want);                                             \
            failures++;                                                              \
        }                                                                            \
    } while (0)

static uint8_t buf[2 * HARNESS_FRAME];

static void setup(struct harness *h)
{
    if (harness_open(h, FSB_CACHE_AUTO) != 0 || harness_init(h, 38) != 0) {
        printf("    harness set-up failed\n");
        failures++;
    }
}

static void test_request_before_init_is_refused(void)
{
    struct harness h;
    harness_open(&h, FSB_CACHE_AUTO);
    struct fuse_getattr_in in = { 0 };
    harness_run(&h, buf, harness_build(&h, buf, FUSE_GETATTR, 1, &in, sizeof(in), NULL, NULL));
    CHECK_ERR(&h, -EIO);
    harness_close(&h);
}

static void test_init_negotiates_and_only_once(void)
{
    struct harness h;
    harness_open(&h, FSB_CACHE_AUTO);
    CHECK_ERR(&h, 1); /* nothing sent yet */
    CHECK(harness_init(&h, 38) == 0);
    const struct fuse_init_out *out = harness_payload(&h);
    CHECK(out->major == 7 && out->minor == 38);
    CHECK(out->max_write == 1024 * 1024);
    CHECK(out->flags & FUSE_POSIX_LOCKS);
    CHECK(!(out->flags & FUSE_WRITEBACK_CACHE)); /* not asked for */
    CHECK(harness_init(&h, 38) == -EPROTO);
    harness_close(&h);
}

static void test_init_accepts_old_minors_with_short_structs(void)
{
    struct harness h;
    harness_open(&h, FSB_CACHE_AUTO);
    CHECK(harness_init(&h, 31) == 0); /* 16-byte fuse_init_in */
    const struct fuse_init_out *out = harness_payload(&h);
    CHECK(out->minor == 31);
    harness_close(&h);
    harness_open(&h, FSB_CACHE_AUTO);
    CHECK(harness_init(&h, 20) == -EPROTO); /* older than we serve */
    harness_close(&h);
}

static void test_truncated_header_gets_no_reply(void)
{
    struct harness h;
    setup(&h);
    memset(buf, 0, sizeof(buf));
    harness_run(&h, buf, 20);
    CHECK(h.reply_len == 0);
    harness_close(&h);
}

static void test_length_field_must_match_the_bytes(void)
{
    struct harness h;
    setup(&h);
    size_t len = harness_build(&h, buf, FUSE_LOOKUP, 1, NULL, 0, "x", NULL);
    harness_run(&h, buf, len + 8); /* header says len, 8 more bytes came */
    CHECK_ERR(&h, -EINVAL);
    struct fuse_in_header *hdr = (void *)buf;
    hdr->len = (uint32_t)len + 100; /* says more than came */
    harness_run(&h, buf, len);
    CHECK_ERR(&h, -EINVAL);
    harness_close(&h);
}

static void test_oversized_frame_is_refused(void)
{
    struct harness h;
    setup(&h);
    struct fuse_write_in in = { .size = HARNESS_FRAME };
    size_t len = harness_build(&h, buf, FUSE_WRITE, 1, &in, sizeof(in), NULL, NULL);
    memset(buf + len, 'x', HARNESS_FRAME);
    struct fuse_in_header *hdr = (void *)buf;
    hdr->len = (uint32_t)(len + HARNESS_FRAME);
    harness_run(&h, buf, len + HARNESS_FRAME);
    CHECK_ERR(&h, -EINVAL);
    harness_close(&h);
}

static void test_unknown_opcodes_get_enosys(void)
{
    struct harness h;
    setup(&h);
    uint32_t codes[] = { 7 /* unused */, FUSE_BMAP, FUSE_IOCTL, FUSE_POLL, 4096, UINT32_MAX };
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        harness_run(&h, buf, harness_build(&h, buf, codes[i], 1, NULL, 0, NULL, NULL));
        CHECK_ERR(&h, -ENOSYS);
    }
    harness_close(&h);
}

static void test_names_must_be_single_components(void)
{
    struct harness h;
    setup(&h);
    struct fuse_mkdir_in in = { .mode = 0755 };
    const char *bad[] = { "a/b", "/", "", ".", "..", "../escape" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        harness_run(&h, buf, harness_build(&h, buf, FUSE_MKDIR, 1, &in, sizeof(in), bad[i], NULL));
        CHECK_ERR(&h, -EINVAL);
    }
    char longname[NAME_MAX + 2];
    memset(longname, 'n', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = 0;
    harness_run(&h, buf, harness_build(&h, buf, FUSE_MKDIR, 1, &in, sizeof(in), longname, NULL));
    CHECK_ERR(&h, -ENAMETOOLONG);
    longname[NAME_MAX] = 0; /* exactly 255 bytes: fine */
    harness_run(&h, buf, harness_build(&h, buf, FUSE_MKDIR, 1, &in, sizeof(in), longname, NULL));
    CHECK_ERR(&h, 0);
    harness_close(&h);
}

static void test_name_without_nul_or_with_trailing_bytes(void)
{
    struct harness h;
    setup(&h);
    size_t len = harness_build(&h, buf, FUSE_LOOKUP, 1, NULL, 0, "abc", NULL);
    struct fuse_in_header *hdr = (void *)buf;
    hdr->len = (uint32_t)(len - 1); /* drop the NUL */
    harness_run(&h, buf, len - 1);
    CHECK_ERR(&h, -EINVAL);
    /* "a\0b\0": a NUL inside what should be one name */
    len = harness_build(&h, buf, FUSE_LOOKUP, 1, NULL, 0, "a", "b");
    harness_run(&h, buf, len);
    CHECK_ERR(&h, -EINVAL);
    harness_close(&h);
}

static void test_fixed_args_must_be_complete(void)
{
    struct harness h;
    setup(&h);
    struct fuse_setattr_in in = { .valid = FATTR_MODE, .mode = 0700 };
    uint32_t ops[] = { FUSE_SETATTR, FUSE_READ, FUSE_WRITE, FUSE_GETLK, FUSE_RENAME2,
                       FUSE_COPY_FILE_RANGE, FUSE_LSEEK, FUSE_FALLOCATE, FUSE_OPEN };
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        harness_run(&h, buf, harness_build(&h, buf, ops[i], 1, &in, 4, NULL, NULL));
        CHECK_ERR(&h, -EINVAL);
    }
    harness_close(&h);
}

static void test_write_size_must_match_payload(void)
{
    struct harness h;
    setup(&h);
    struct fuse_write_in in = { .size = 100 };
    size_t len = harness_build(&h, buf, FUSE_WRITE, 1, &in, sizeof(in), NULL, NULL);
    memset(buf + len, 'x', 50);
    struct fuse_in_header *hdr = (void *)buf;
    hdr->len = (uint32_t)(len + 50);
    harness_run(&h, buf, len + 50);
    CHECK_ERR(&h, -EINVAL);
    harness_close(&h);
}

static void test_read_larger_than_negotiated_is_refused(void)
{
    struct harness h;
    setup(&h);
    struct fuse_read_in in = { .size = 2 * 1024 * 1024 };
    harness_run(&h, buf, harness_build(&h, buf, FUSE_READ, 1, &in, sizeof(in), NULL, NULL));
    CHECK_ERR(&h, -EINVAL);
    harness_close(&h);
}

static void test_batch_forget_count_must_match(void)
{
    struct harness h;
    setup(&h);
    struct { struct fuse_batch_forget_in in; struct fuse_forget_one one[2]; } arg = {
        .in = { .count = 1000000 }, .one = { { 5, 1 }, { 6, 1 } } };
    harness_run(&h, buf, harness_build(&h, buf, FUSE_BATCH_FORGET, 0, &arg, sizeof(arg), NULL, NULL));
    CHECK(h.reply_len == 0); /* never a reply, and nothing forgotten */
    /* The root survives any forget. */
    struct fuse_forget_in f = { .nlookup = 1000 };
    harness_run(&h, buf, harness_build(&h, buf, FUSE_FORGET, 1, &f, sizeof(f), NULL, NULL));
    struct fuse_getattr_in g = { 0 };
    harness_run(&h, buf, harness_build(&h, buf, FUSE_GETATTR, 1, &g, sizeof(g), NULL, NULL));
    CHECK_ERR(&h, 0);
    harness_close(&h);
}

static void test_forged_nodeids_and_handles(void)
{
    struct harness h;
    setup(&h);
    struct fuse_getattr_in g = { .getattr_flags = FUSE_GETATTR_FH, .fh = 12345 };
    uint64_t ids[] = { 0, 2, 999999, UINT64_MAX };
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        harness_run(&h, buf, harness_build(&h, buf, FUSE_GETATTR, ids[i], &g, sizeof(g), NULL, NULL));
        CHECK_ERR(&h, -ESTALE);
    }
    struct fuse_read_in r = { .fh = 77, .size = 10 };
    harness_run(&h, buf, harness_build(&h, buf, FUSE_READ, 1, &r, sizeof(r), NULL, NULL));
    CHECK_ERR(&h, -EBADF);
    harness_close(&h);
}

static void test_rename_flags(void)
{
    struct harness h;
    setup(&h);
    struct fuse_rename2_in in = { .newdir = 1, .flags = 4 /* RENAME_WHITEOUT */ };
    harness_run(&h, buf, harness_build(&h, buf, FUSE_RENAME2, 1, &in, sizeof(in), "a", "b"));
    CHECK_ERR(&h, -EINVAL);
    in.flags = 1 | 2; /* NOREPLACE | EXCHANGE */
    harness_run(&h, buf, harness_build(&h, buf, FUSE_RENAME2, 1, &in, sizeof(in), "a", "b"));
    CHECK_ERR(&h, -EINVAL);
    harness_close(&h);
}

static void test_readonly_export_refuses_changes(void)
{
    struct harness h;
    harness_open(&h, FSB_CACHE_AUTO);
    h.export.readonly = true;
    harness_init(&h, 38);
    struct fuse_mkdir_in m = { .mode = 0755 };
    harness_run(&h, buf, harness_build(&h, buf, FUSE_MKDIR, 1, &m, sizeof(m), "d", NULL));
    CHECK_ERR(&h, -EROFS);
    struct fuse_open_in o = { .flags = O_WRONLY };
    harness_run(&h, buf, harness_build(&h, buf, FUSE_OPEN, 1, &o, sizeof(o), NULL, NULL));
    CHECK_ERR(&h, -EROFS);
    harness_close(&h);
}

static void test_readdir_buffer_too_small_for_an_entry(void)
{
    struct harness h;
    setup(&h);
    struct fuse_open_in o = { .flags = O_RDONLY };
    harness_run(&h, buf, harness_build(&h, buf, FUSE_OPENDIR, 1, &o, sizeof(o), NULL, NULL));
    CHECK_ERR(&h, 0);
    uint64_t fh = ((const struct fuse_open_out *)harness_payload(&h))->fh;
    struct fuse_read_in in = { .fh = fh, .size = 10 };
    harness_run(&h, buf, harness_build(&h, buf, FUSE_READDIR, 1, &in, sizeof(in), NULL, NULL));
    CHECK_ERR(&h, -EINVAL); /* not an empty reply, which would mean "end" */
    in.size = 4096;
    harness_run(&h, buf, harness_build(&h, buf, FUSE_READDIR, 1, &in, sizeof(in), NULL, NULL));
    CHECK_ERR(&h, 0);
    CHECK(h.reply_len > sizeof(struct fuse_out_header)); /* "." and ".." at least */
    harness_close(&h);
}

static void test_hello_decoding(void)
{
    uint8_t b[FSB_HELLO_SIZE];
    struct fsb_hello in = { .version = 1, .byte_order = FSB_BYTE_ORDER_LE, .max_frame = 8192,
                            .name_len = 3 };
    struct fsb_hello out;
    fsb_hello_encode(&in, b);
    CHECK(fsb_hello_decode(b, &out) == 0 && out.max_frame == 8192 && out.name_len == 3);
    b[0] = 'X';
    CHECK(fsb_hello_decode(b, &out) == -EPROTO);
    fsb_hello_encode(&in, b);
    b[7] = 1; /* reserved in version 1 */
    CHECK(fsb_hello_decode(b, &out) == -EPROTO);
    in.version = 2;
    in.flags = FSB_HELLO_JOIN;
    fsb_hello_encode(&in, b);
    CHECK(fsb_hello_decode(b, &out) == 0 && out.flags == FSB_HELLO_JOIN &&
          fsb_hello_tail_size(&out) == 3 + FSB_SESSION_TOKEN_SIZE);
    b[7] = 0x03; /* CPU: unknown in version 2 */
    CHECK(fsb_hello_decode(b, &out) == -EPROTO);
    in.version = 3;
    in.flags = FSB_HELLO_JOIN | FSB_HELLO_CPU;
    in.cpu = 5;
    fsb_hello_encode(&in, b);
    cpu_set_t cpus;
    CPU_ZERO(&cpus);
    CHECK(fsb_hello_decode(b, &out) == 0 && out.cpu == 5 && fsb_hello_cpu_hint(&out, &cpus) == -1);
    CPU_SET(5, &cpus);
    CHECK(fsb_hello_cpu_hint(&out, &cpus) == 5);
    b[7] = FSB_HELLO_JOIN; /* bytes 14-15 without the CPU flag */
    CHECK(fsb_hello_decode(b, &out) == -EPROTO);
    b[7] = 0x04; /* an unknown flag */
    CHECK(fsb_hello_decode(b, &out) == -EPROTO);
    in.flags = 0;
    in.name_len = 300;
    fsb_hello_encode(&in, b);
    CHECK(fsb_hello_decode(b, &out) == -ENAMETOOLONG);
    memcpy(out.name, "a/b", 3);
    out.name_len = 3;
    CHECK(fsb_hello_check_name(&out) == -EINVAL);
}

static void test_session_terms_decoding(void)
{
    uint8_t b[FSB_SESSION_TERMS_SIZE];
    struct fsb_session_terms in = { .features = FSB_TERMS_KNOWN, .open_flags = FOPEN_KEEP_CACHE };
    struct fsb_session_terms out;
    fsb_session_terms_encode(&in, b);
    CHECK(fsb_session_terms_decode(b, FSB_STREAM_VERSION, &out) == 0 &&
          memcmp(&in, &out, sizeof(in)) == 0);
    /* a version-4 reply knows no NO_OPEN */
    CHECK(fsb_session_terms_decode(b, FSB_STREAM_VERSION_NO_OPEN - 1, &out) == -EPROTO);
    in.features = FSB_TERMS_KNOWN & ~FSB_TERMS_NO_OPEN;
    fsb_session_terms_encode(&in, b);
    CHECK(fsb_session_terms_decode(b, FSB_STREAM_VERSION_NO_OPEN - 1, &out) == 0 &&
          out.features == in.features);
    in.features = FSB_TERMS_KNOWN + 1; /* the next bit: unknown */
    fsb_session_terms_encode(&in, b);
    CHECK(fsb_session_terms_decode(b, FSB_STREAM_VERSION, &out) == -EPROTO && out.features == 0);
    in = (struct fsb_session_terms){ .open_flags = FOPEN_NONSEEKABLE };
    fsb_session_terms_encode(&in, b);
    CHECK(fsb_session_terms_decode(b, FSB_STREAM_VERSION, &out) == -EPROTO);
}


int main(void)
{
    static const struct unit_test tests[] = {
        TEST(test_request_before_init_is_refused),
        TEST(test_session_terms_decoding),
        TEST(test_init_negotiates_and_only_once),
        TEST(test_init_accepts_old_minors_with_short_structs),
        TEST(test_truncated_header_gets_no_reply),
        TEST(test_length_field_must_match_the_bytes),
        TEST(test_oversized_frame_is_refused),
        TEST(test_unknown_opcodes_get_enosys),
        TEST(test_names_must_be_single_components),
        TEST(test_name_without_nul_or_with_trailing_bytes),
        TEST(test_fixed_args_must_be_complete),
        TEST(test_write_size_must_match_payload),
        TEST(test_read_larger_than_negotiated_is_refused),
        TEST(test_batch_forget_count_must_match),
        TEST(test_forged_nodeids_and_handles),
        TEST(test_rename_flags),
        TEST(test_readonly_export_refuses_changes),
        TEST(test_readdir_buffer_too_small_for_an_entry),
        TEST(test_hello_decoding),
    };
    return RUN_TESTS(tests);
}
