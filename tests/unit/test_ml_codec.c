/*
 * test_ml_codec.c - the matchlock CBOR codec: our bytes equal matchlock's
 * for the same message (the examples of matchlock-protocol.md, and maps
 * encoded the way its Go encoder does), and decoding refuses what a
 * hostile peer can send while ignoring what a newer one may add.
 */
#include "unit_check.h"
#include "matchlock/ml_codec.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>


static uint8_t buf[64 * 1024];

/* Hex text (spaces allowed) to bytes; returns the length. */
static size_t unhex(const char *hex, uint8_t *out)
{
    size_t n = 0;
    for (const char *p = hex; *p;) {
        if (*p == ' ') {
            p++;
            continue;
        }
        unsigned v;
        sscanf(p, "%2x", &v);
        out[n++] = (uint8_t)v;
        p += 2;
    }
    return n;
}

/* The encoded frame (len bytes of buf) equals the hex text. */
static bool same_bytes(ssize_t len, const char *hex)
{
    static uint8_t want[4096];
    size_t n = unhex(hex, want);
    if (len < 0 || (size_t)len != n || memcmp(buf, want, n) != 0) {
        printf("    got  ");
        for (ssize_t i = 0; i < len; i++)
            printf("%02x", buf[i]);
        printf(" (%zd bytes)\n    want %s\n", len, hex);
        return false;
    }
    return true;
}

static struct ml_request req;
static struct ml_response resp;
static const char *why;

static int decode_request_hex(const char *hex)
{
    static uint8_t body[4096];
    size_t n = unhex(hex, body);
    why = NULL;
    return ml_decode_request(body, n, &req, &why);
}

/* Refused with a reason. */
#define CHECK_BAD_REQUEST(hex)                                                       \
    do {                                                                             \
        CHECK(decode_request_hex(hex) == -EBADMSG);                                  \
        CHECK(why != NULL);                                                          \
    } while (0)

/* ---------------------------------------------------------------------- */
/* The byte examples of matchlock-protocol.md                               */

static void test_doc_example_lookup(void)
{
    const char *frame = "0000001f a2 626f70 00 6470617468 74 2f776f726b73706163652f68656c6c6f2e747874";
    memset(&req, 0, sizeof(req));
    req.op = ML_OP_LOOKUP;
    strcpy(req.path, "/workspace/hello.txt");
    CHECK(same_bytes(ml_encode_request(&req, buf, sizeof(buf)), frame));
    CHECK(ml_frame_length(buf) == 0x1f);
    CHECK(ml_decode_request(buf + 4, 0x1f, &req, NULL) == 0);
    CHECK(req.op == ML_OP_LOOKUP && strcmp(req.path, "/workspace/hello.txt") == 0);
    CHECK(req.fh == 0 && req.data == NULL && req.new_path[0] == '\0');
}

static void test_doc_example_enoent(void)
{
    memset(&resp, 0, sizeof(resp));
    resp.err = -ENOENT;
    CHECK(same_bytes(ml_encode_response(&resp, buf, sizeof(buf)), "00000006 a1 63657272 21"));
    CHECK(ml_decode_response(buf + 4, 6, &resp, NULL) == 0);
    CHECK(resp.err == -ENOENT && !resp.has_stat && resp.entry_count == 0);
}

static void test_doc_example_read(void)
{
    memset(&req, 0, sizeof(req));
    req.op = ML_OP_READ;
    req.fh = 1;
    req.sz = 4096;
    CHECK(same_bytes(ml_encode_request(&req, buf, sizeof(buf)),
                     "0000000f a3 626f70 03 626668 01 62737a 191000"));
    CHECK(ml_decode_request(buf + 4, 0xf, &req, NULL) == 0);
    CHECK(req.op == ML_OP_READ && req.fh == 1 && req.sz == 4096 && req.path[0] == '\0');
}

static void test_doc_example_open_response(void)
{
    memset(&resp, 0, sizeof(resp));
    resp.fh = 1;
    CHECK(same_bytes(ml_encode_response(&resp, buf, sizeof(buf)),
                     "0000000a a2 63657272 00 626668 01"));
    CHECK(ml_decode_response(buf + 4, 0xa, &resp, NULL) == 0);
    CHECK(resp.err == 0 && resp.fh == 1);
}

/* ---------------------------------------------------------------------- */
/* More messages, as matchlock's Go encoder writes them                     */

static void test_stat_response_bytes(void)
{
    memset(&resp, 0, sizeof(resp));
    resp.has_stat = true;
    resp.stat = (struct ml_stat){.size = 5, .mode = 0x1A4, .mtime = 1700000000,
                                 .ino = 0x1234567890abcdefULL};
    resp.fh = 7;
    CHECK(same_bytes(ml_encode_response(&resp, buf, sizeof(buf)),
                     "0000003e a3 63657272 00 6473746174 a5 6473697a65 05 646d6f6465 1901a4"
                     " 656d74696d65 1a6553f100 6669735f646972 f4 63696e6f 1b1234567890abcdef"
                     " 626668 07"));
    CHECK(ml_decode_response(buf + 4, 0x3e, &resp, NULL) == 0);
    CHECK(resp.has_stat && resp.stat.size == 5 && resp.stat.mode == 0x1A4);
    CHECK(resp.stat.mtime == 1700000000 && !resp.stat.is_dir);
    CHECK(resp.stat.ino == 0x1234567890abcdefULL && resp.fh == 7);
}

static void test_entries_response_bytes_and_walk(void)
{
    static uint8_t entries[1024];
    size_t len = 0;
    struct ml_dirent a = {.name = "a", .is_dir = true, .mode = ML_GO_MODE_DIR, .size = 4096,
                          .ino = 3};
    struct ml_dirent b = {.name = "b.txt"};
    CHECK(ml_encode_dirent(&a, entries, sizeof(entries), &len) == 0);
    CHECK(ml_encode_dirent(&b, entries, sizeof(entries), &len) == 0);
    memset(&resp, 0, sizeof(resp));
    resp.entries = entries;
    resp.entries_len = len;
    resp.entry_count = 2;
    ssize_t n = ml_encode_response(&resp, buf, sizeof(buf));
    CHECK(same_bytes(n, "00000056 a2 63657272 00 67656e7472696573 82"
                        " a5 646e616d65 6161 6669735f646972 f5 646d6f6465 1a80000000"
                        " 6473697a65 191000 63696e6f 03"
                        " a4 646e616d65 65622e747874 6669735f646972 f4 646d6f6465 00"
                        " 6473697a65 00"));
    CHECK(ml_decode_response(buf + 4, (size_t)n - 4, &resp, NULL) == 0);
    CHECK(resp.entry_count == 2);
    struct ml_dirent_iter it;
    struct ml_dirent d;
    ml_dirent_iter_init(&it, &resp);
    CHECK(ml_dirent_next(&it, &d) && strcmp(d.name, "a") == 0 && d.is_dir && d.ino == 3);
    CHECK(d.mode == ML_GO_MODE_DIR && d.size == 4096);
    CHECK(ml_dirent_next(&it, &d) && strcmp(d.name, "b.txt") == 0 && !d.is_dir && d.ino == 0);
    CHECK(!ml_dirent_next(&it, &d));
}

static void test_write_request_bytes(void)
{
    memset(&req, 0, sizeof(req));
    req.op = ML_OP_WRITE;
    req.fh = 2;
    req.off = -1;
    req.data = "hi";
    req.data_len = 2;
    req.uid = req.gid = 1000;
    CHECK(same_bytes(ml_encode_request(&req, buf, sizeof(buf)),
                     "00000024 a6 626f70 04 626668 02 636f6666 20 6464617461 426869"
                     " 63756964 1903e8 63676964 1903e8"));
    CHECK(ml_decode_request(buf + 4, 0x24, &req, NULL) == 0);
    CHECK(req.off == -1 && req.data_len == 2 && memcmp(req.data, "hi", 2) == 0);
    CHECK(req.uid == 1000 && req.gid == 1000 && req.fh == 2);
}

static void test_rename_request_bytes(void)
{
    memset(&req, 0, sizeof(req));
    req.op = ML_OP_RENAME;
    strcpy(req.path, "/w/a");
    strcpy(req.new_path, "/w/b");
    CHECK(same_bytes(ml_encode_request(&req, buf, sizeof(buf)),
                     "0000001d a3 626f70 09 6470617468 642f772f61 686e65775f70617468 642f772f62"));
}

static void test_integer_extremes_round_trip(void)
{
    memset(&req, 0, sizeof(req));
    req.op = 255;
    req.fh = UINT64_MAX;
    req.off = INT64_MIN;
    req.sz = UINT32_MAX;
    req.mode = 0100644;
    ssize_t n = ml_encode_request(&req, buf, sizeof(buf));
    CHECK(n > 0);
    CHECK(ml_decode_request(buf + 4, (size_t)n - 4, &req, NULL) == 0);
    CHECK(req.op == 255 && req.fh == UINT64_MAX && req.off == INT64_MIN);
    CHECK(req.sz == UINT32_MAX && req.mode == 0100644);
    memset(&resp, 0, sizeof(resp));
    resp.err = INT32_MIN;
    n = ml_encode_response(&resp, buf, sizeof(buf));
    CHECK(ml_decode_response(buf + 4, (size_t)n - 4, &resp, NULL) == 0 && resp.err == INT32_MIN);
}

static void test_fsbridge_extensions_round_trip(void)
{
    memset(&req, 0, sizeof(req));
    req.op = ML_OP_SETATTR;
    strcpy(req.path, "/w/f");
    req.set = ML_SET_UID | ML_SET_MTIME;
    req.owner_uid = 1000;
    req.mtime = -5;
    req.mtime_nsec = 999999999;
    ssize_t n = ml_encode_request(&req, buf, sizeof(buf));
    CHECK(n > 0);
    memset(&req, 0xff, sizeof(req));
    CHECK(ml_decode_request(buf + 4, (size_t)n - 4, &req, NULL) == 0);
    CHECK(req.set == (ML_SET_UID | ML_SET_MTIME) && req.owner_uid == 1000);
    CHECK(req.owner_gid == 0 && req.mtime == -5 && req.mtime_nsec == 999999999);
    CHECK(req.atime == 0 && req.mode == 0);
    memset(&resp, 0, sizeof(resp));
    resp.has_stat = true;
    resp.stat = (struct ml_stat){.size = 1, .nlink = 2, .ctime = 3, .ctime_nsec = 4,
                                 .blocks = 8, .rdev = 0x10300, .atime = -1};
    n = ml_encode_response(&resp, buf, sizeof(buf));
    CHECK(n > 0);
    memset(&resp, 0, sizeof(resp));
    CHECK(ml_decode_response(buf + 4, (size_t)n - 4, &resp, NULL) == 0);
    CHECK(resp.stat.nlink == 2 && resp.stat.ctime == 3 && resp.stat.ctime_nsec == 4);
    CHECK(resp.stat.blocks == 8 && resp.stat.rdev == 0x10300 && resp.stat.atime == -1);
}

static void test_encoding_that_does_not_fit(void)
{
    memset(&req, 0, sizeof(req));
    strcpy(req.path, "/workspace/hello.txt");
    CHECK(ml_encode_request(&req, buf, 0x1f + 3) == -EMSGSIZE);
    CHECK(ml_encode_request(&req, buf, 0x1f + 4) == 0x1f + 4);
    CHECK(ml_encode_request(&req, buf, 2) == -EMSGSIZE);
    req.data = buf;
    req.data_len = ML_DATA_MAX + 1;
    CHECK(ml_encode_request(&req, buf, sizeof(buf)) == -EINVAL);
    memset(&resp, 0, sizeof(resp));
    resp.err = -ENOENT;
    CHECK(ml_encode_response(&resp, buf, 9) == -EMSGSIZE);
    CHECK(ml_response_size_bound(&resp) >= 10);
    struct ml_dirent d = {.name = "x"};
    size_t len = 0;
    CHECK(ml_encode_dirent(&d, buf, 5, &len) == -EMSGSIZE && len == 0);
}

/* ---------------------------------------------------------------------- */
/* Decoding: tolerant where matchlock is, strict everywhere else            */

static void test_unknown_keys_are_skipped(void)
{
    /* {"zz": {"a": [1, "x", h'00', true, null, 1.5]}, "op": 1, "path": "/p"} */
    CHECK(decode_request_hex("a3 627a7a a1 6161 86 01 6178 4100 f5 f6 f93e00"
                             " 626f70 01 6470617468 622f70") == 0);
    CHECK(req.op == 1 && strcmp(req.path, "/p") == 0);
    /* newer matchlock's "uid"/"gid" in stat, and an unknown stat key */
    static uint8_t body[256];
    size_t n = unhex("a2 63657272 00 6473746174 a3 6473697a65 07 63756964 1903e8 6378787800", body);
    CHECK(ml_decode_response(body, n, &resp, &why) == 0);
    CHECK(resp.has_stat && resp.stat.size == 7 && resp.stat.uid == 1000 && resp.stat.mode == 0);
}

static void test_missing_keys_are_zero(void)
{
    CHECK(decode_request_hex("a0") == 0); /* {} is a Lookup of "" */
    CHECK(req.op == 0 && req.path[0] == '\0' && req.off == 0 && req.data_len == 0);
    static uint8_t body[16];
    size_t n = unhex("a0", body);
    CHECK(ml_decode_response(body, n, &resp, NULL) == 0 && resp.err == 0);
}

static void test_keys_in_any_order(void)
{
    CHECK(decode_request_hex("a3 62737a 191000 626668 01 626f70 03") == 0);
    CHECK(req.op == 3 && req.fh == 1 && req.sz == 4096);
}

static void test_wrong_types_are_refused(void)
{
    CHECK_BAD_REQUEST("a1 626f70 6131");              /* op: "1" */
    CHECK_BAD_REQUEST("a1 6470617468 42 2f70");       /* path: bytes */
    CHECK_BAD_REQUEST("a1 6464617461 62 6869");       /* data: text */
    CHECK_BAD_REQUEST("a1 626668 20");                /* fh: -1 */
    CHECK_BAD_REQUEST("a1 626668 f6");                /* fh: null */
    CHECK_BAD_REQUEST("a1 626668 f93c00");            /* fh: 1.0 */
    CHECK_BAD_REQUEST("a1 626668 f5");                /* fh: true */
    CHECK_BAD_REQUEST("a1 626f70 80");                /* op: [] */
    CHECK_BAD_REQUEST("81 00");                       /* not a map */
    CHECK_BAD_REQUEST("00");
    CHECK_BAD_REQUEST("a1 01 02");                    /* integer key */
    static uint8_t body[64];
    size_t n = unhex("a1 6473746174 01", body);       /* stat: 1 */
    CHECK(ml_decode_response(body, n, &resp, &why) == -EBADMSG);
    n = unhex("a1 67656e7472696573 a0", body);        /* entries: {} */
    CHECK(ml_decode_response(body, n, &resp, &why) == -EBADMSG);
    n = unhex("a1 6473746174 a1 6669735f646972 01", body); /* is_dir: 1 */
    CHECK(ml_decode_response(body, n, &resp, &why) == -EBADMSG);
}

static void test_integer_ranges(void)
{
    CHECK_BAD_REQUEST("a1 626f70 190100");            /* op 256 */
    CHECK(decode_request_hex("a1 626f70 18ff") == 0 && req.op == 255);
    CHECK_BAD_REQUEST("a1 62737a 1b0000000100000000"); /* sz 2^32 */
    CHECK_BAD_REQUEST("a1 636f6666 1b8000000000000000"); /* off 2^63 */
    CHECK_BAD_REQUEST("a1 636f6666 3b8000000000000000"); /* off -2^63-1 */
    CHECK(decode_request_hex("a1 636f6666 3b7fffffffffffffff") == 0 && req.off == INT64_MIN);
    static uint8_t body[64];
    size_t n = unhex("a1 63657272 3a80000000", body); /* err -2^31-1 */
    CHECK(ml_decode_response(body, n, &resp, &why) == -EBADMSG);
    n = unhex("a1 63657272 3a7fffffff", body);
    CHECK(ml_decode_response(body, n, &resp, &why) == 0 && resp.err == INT32_MIN);
}

static void test_non_shortest_integers_are_accepted(void)
{
    /* Valid CBOR, only not canonical: decoders must accept it. */
    CHECK(decode_request_hex("a1 626f70 1b0000000000000003") == 0 && req.op == 3);
}

static void test_indefinite_lengths_are_refused(void)
{
    CHECK_BAD_REQUEST("bf 626f70 00 ff");                   /* indefinite map */
    CHECK_BAD_REQUEST("a1 6470617468 7f 612f ff");          /* indefinite text */
    CHECK_BAD_REQUEST("a1 6464617461 5f 4101 ff");          /* indefinite bytes */
    CHECK_BAD_REQUEST("a1 627a7a 9f 01 ff");                /* inside an unknown key */
    CHECK_BAD_REQUEST("a1 7f 626f70 ff 00");                /* indefinite key */
}

static void test_tags_are_refused(void)
{
    CHECK_BAD_REQUEST("c1 a1 626f70 00");
    CHECK_BAD_REQUEST("a1 626668 c2 4101");                  /* bignum */
    CHECK_BAD_REQUEST("a1 627a7a c0 6130");                  /* in an unknown key */
}

static void test_trailing_and_truncated_bytes(void)
{
    CHECK_BAD_REQUEST("a1 626f70 00 00");                   /* one more item */
    CHECK_BAD_REQUEST("a2 626f70 00");                      /* missing pair */
    CHECK_BAD_REQUEST("a1 6470617468 65 2f70");             /* text shorter than said */
    CHECK_BAD_REQUEST("a1 626668 1b 0000");                 /* integer cut short */
    CHECK_BAD_REQUEST("");
}

static void test_huge_lengths_are_refused_without_allocation(void)
{
    CHECK_BAD_REQUEST("a1 6470617468 7b ffffffffffffffff 2f"); /* text of 2^64-1 */
    CHECK_BAD_REQUEST("a1 6464617461 5b 7fffffffffffffff 00"); /* bytes of 2^63-1 */
    CHECK_BAD_REQUEST("bb ffffffffffffffff 626f70 00");       /* map of 2^64-1 pairs */
    CHECK_BAD_REQUEST("a1 627a7a 9b ffffffffffffffff 00");    /* array in an unknown key */
    CHECK_BAD_REQUEST("a1 627a7a bb 7fffffffffffffff 00");    /* map in an unknown key */
}

static void test_deep_nesting_is_refused(void)
{
    CHECK_BAD_REQUEST("a1 627a7a 81 81 81 81 81 81 81 81 81 81 00");
    CHECK(decode_request_hex("a1 627a7a 81 81 81 00") == 0);
}

static void test_duplicate_keys_are_refused(void)
{
    CHECK_BAD_REQUEST("a2 626f70 00 626f70 01");
    /* an unknown key twice is only skipped */
    CHECK(decode_request_hex("a2 627a7a 00 627a7a 01") == 0);
}

static void test_paths_and_names(void)
{
    CHECK_BAD_REQUEST("a1 6470617468 63 2f0061"); /* NUL inside */
    static uint8_t body[ML_PATH_SIZE + 32];
    /* ML_PATH_MAX bytes (a prefix and PATH_MAX - 1 below it): the longest path; one more: too long */
    for (size_t len = ML_PATH_MAX; len <= ML_PATH_MAX + 1; len++) {
        size_t n = unhex("a1 6470617468 79", body);
        body[n++] = (uint8_t)(len >> 8);
        body[n++] = (uint8_t)len;
        memset(body + n, 'a', len);
        body[n] = '/';
        n += len;
        int ret = ml_decode_request(body, n, &req, &why);
        CHECK(len == ML_PATH_MAX ? ret == 0 && strlen(req.path) == len : ret == -EBADMSG);
    }
    /* entry names must be single components */
    const char *bad[] = {"a1 646e616d65 6161", "a0", "a1 646e616d65 60", "a1 646e616d65 612e", "a1 646e616d65 622e2e",
                         "a1 646e616d65 63612f62", "a1 646e616d65 626100"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t n = unhex("a1 67656e7472696573 81", body);
        n += unhex(bad[i], body + n);
        CHECK(ml_decode_response(body, n, &resp, &why) == (i == 0 ? 0 : -EBADMSG));
    }
}

static void test_data_limit(void)
{
    size_t len = ML_DATA_MAX + 1;
    uint8_t *body = calloc(1, len + 32);
    size_t n = unhex("a1 6464617461 5a", body);
    body[n++] = (uint8_t)(len >> 24);
    body[n++] = (uint8_t)(len >> 16);
    body[n++] = (uint8_t)(len >> 8);
    body[n++] = (uint8_t)len;
    CHECK(ml_decode_request(body, n + len, &req, &why) == -EBADMSG);
    body[n - 1] = 0; /* exactly ML_DATA_MAX */
    CHECK(ml_decode_request(body, n + len - 1, &req, &why) == 0 && req.data_len == ML_DATA_MAX);
    CHECK(req.data == body + n);
    free(body);
}

/* ---------------------------------------------------------------------- */
/* Go os.FileMode                                                           */

static void test_go_file_modes(void)
{
    CHECK(ml_go_mode_from_unix(S_IFDIR | 0755) == 0x800001ED);
    CHECK(ml_go_mode_from_unix(S_IFREG | 0644) == 0x1A4);
    CHECK(ml_go_mode_from_unix(S_IFDIR | 01777) == 0x801001FF);
    CHECK(ml_go_mode_from_unix(S_IFLNK | 0777) == (ML_GO_MODE_SYMLINK | 0777));
    CHECK(ml_go_mode_from_unix(S_IFCHR | 0600) ==
          (ML_GO_MODE_DEVICE | ML_GO_MODE_CHAR_DEVICE | 0600));
    CHECK(ml_go_mode_from_unix(S_IFREG | 04755) == (ML_GO_MODE_SETUID | 0755));
    const mode_t modes[] = {S_IFDIR | 0755, S_IFREG | 0644, S_IFDIR | 01777, S_IFLNK | 0777,
                            S_IFIFO | 0600, S_IFSOCK | 0755, S_IFCHR | 0620, S_IFBLK | 0660,
                            S_IFREG | 06755, S_IFREG};
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
        CHECK(ml_unix_mode_from_go(ml_go_mode_from_unix(modes[i])) == modes[i]);
    CHECK(ml_unix_mode_from_go(ML_GO_MODE_IRREGULAR | 0644) == (S_IFREG | 0644));
    CHECK(ml_op_name(ML_OP_LINK) && strcmp(ml_op_name(ML_OP_LINK), "Link") == 0);
    CHECK(ml_op_name(ML_OP_COUNT) == NULL);
}


int main(void)
{
    static const struct unit_test tests[] = {
        TEST(test_doc_example_lookup),
        TEST(test_doc_example_enoent),
        TEST(test_doc_example_read),
        TEST(test_doc_example_open_response),
        TEST(test_stat_response_bytes),
        TEST(test_entries_response_bytes_and_walk),
        TEST(test_write_request_bytes),
        TEST(test_rename_request_bytes),
        TEST(test_integer_extremes_round_trip),
        TEST(test_fsbridge_extensions_round_trip),
        TEST(test_encoding_that_does_not_fit),
        TEST(test_unknown_keys_are_skipped),
        TEST(test_missing_keys_are_zero),
        TEST(test_keys_in_any_order),
        TEST(test_wrong_types_are_refused),
        TEST(test_integer_ranges),
        TEST(test_non_shortest_integers_are_accepted),
        TEST(test_indefinite_lengths_are_refused),
        TEST(test_tags_are_refused),
        TEST(test_trailing_and_truncated_bytes),
        TEST(test_huge_lengths_are_refused_without_allocation),
        TEST(test_deep_nesting_is_refused),
        TEST(test_duplicate_keys_are_refused),
        TEST(test_paths_and_names),
        TEST(test_data_limit),
        TEST(test_go_file_modes),
    };
    return RUN_TESTS(tests);
}
