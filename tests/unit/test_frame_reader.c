/*
 * test_frame_reader.c - the buffered frame reader of common/fdio.h over a
 * real socketpair: frames of every size around the buffer's (taken in place
 * or moved into the caller's memory), odd lengths that leave the next frame
 * unaligned, a stream that trickles in one byte at a time, and the ends of
 * a stream between frames, inside a length and inside a frame.
 */
#include "unit_check.h"
#include "common/fdio.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CAP 64 /* small, so that frames straddle the end of the buffer */

/* Frame I: its length, then bytes that depend on I and their position. */
static size_t frame_len(unsigned i)
{
    static const size_t lens[] = { 4, 5, 13, 63, 64, 65, 7, 200, 31, 33, 64, 9, 1000, 6 };
    return lens[i % (sizeof(lens) / sizeof(lens[0]))];
}

static void make_frame(unsigned i, unsigned char *out)
{
    uint32_t len = (uint32_t)frame_len(i);
    memcpy(out, &len, sizeof(len));
    for (size_t k = sizeof(len); k < len; k++)
        out[k] = (unsigned char)(i * 31 + k);
}

static size_t stream_of(unsigned n, unsigned char *out)
{
    size_t at = 0;
    for (unsigned i = 0; i < n; i++) {
        make_frame(i, out + at);
        at += frame_len(i);
    }
    return at;
}

static void pair(int sv[2])
{
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        perror("socketpair");
        exit(1);
    }
}

/* Reads frame I through R, whichever way its size calls for, and checks it. */
static bool read_and_check(struct fsb_frame_reader *r, unsigned i)
{
    unsigned char want[1000], got[1000];
    uint32_t len;
    make_frame(i, want);
    if (fsb_frame_next_len(r, &len) != 0 || len != frame_len(i))
        return false;
    void *frame = got;
    int err = len <= r->cap ? fsb_frame_take(r, len, &frame) : fsb_frame_take_into(r, got, len);
    return err == 0 && memcmp(frame, want, len) == 0;
}

static void test_frames_of_every_size(void)
{
    enum { N = 60 };
    static unsigned char bytes[N * 1000];
    int sv[2];
    pair(sv);
    size_t n = stream_of(N, bytes);
    CHECK(fsb_write_full(sv[1], bytes, n) == 0); /* fits the socket's buffer */
    close(sv[1]);
    struct fsb_frame_reader r;
    CHECK(fsb_frame_reader_init(&r, sv[0], CAP) == 0);
    for (unsigned i = 0; i < N; i++)
        CHECK(read_and_check(&r, i));
    uint32_t len;
    CHECK(fsb_frame_next_len(&r, &len) == -EPIPE); /* ends between frames */
    fsb_frame_reader_free(&r);
    close(sv[0]);
}

static void test_buffered_tells_what_follows(void)
{
    unsigned char bytes[64];
    int sv[2];
    pair(sv);
    size_t n = stream_of(3, bytes); /* 4 + 5 + 13 bytes */
    CHECK(fsb_write_full(sv[1], bytes, n) == 0);
    struct fsb_frame_reader r;
    CHECK(fsb_frame_reader_init(&r, sv[0], CAP) == 0);
    CHECK(read_and_check(&r, 0));
    CHECK(fsb_frame_buffered(&r) == 5 + 13);
    CHECK(read_and_check(&r, 1));
    CHECK(read_and_check(&r, 2));
    CHECK(fsb_frame_buffered(&r) == 0);
    void *frame;
    CHECK(fsb_frame_take(&r, CAP + 1, &frame) == -EMSGSIZE);
    fsb_frame_reader_free(&r);
    close(sv[0]);
    close(sv[1]);
}

struct trickle {
    int fd;
    const unsigned char *bytes;
    size_t len;
};

static void *trickle_main(void *arg)
{
    struct trickle *t = arg;
    for (size_t i = 0; i < t->len; i++)
        if (fsb_write_full(t->fd, t->bytes + i, 1) < 0)
            break;
    close(t->fd);
    return NULL;
}

static void test_stream_in_single_bytes(void)
{
    enum { N = 20 };
    static unsigned char bytes[N * 1000];
    int sv[2];
    pair(sv);
    struct trickle t = { sv[1], bytes, stream_of(N, bytes) };
    pthread_t tid;
    CHECK(pthread_create(&tid, NULL, trickle_main, &t) == 0);
    struct fsb_frame_reader r;
    CHECK(fsb_frame_reader_init(&r, sv[0], CAP) == 0);
    for (unsigned i = 0; i < N; i++)
        CHECK(read_and_check(&r, i));
    pthread_join(tid, NULL);
    fsb_frame_reader_free(&r);
    close(sv[0]);
}

/* The stream holds only the first CUT bytes of frame I (a cut inside its
 * length when CUT < 4): the reader must report the end, never a frame. */
static int read_cut_frame(unsigned i, size_t cut)
{
    unsigned char bytes[1000];
    int sv[2];
    pair(sv);
    make_frame(i, bytes);
    CHECK(fsb_write_full(sv[1], bytes, cut) == 0);
    close(sv[1]);
    struct fsb_frame_reader r;
    CHECK(fsb_frame_reader_init(&r, sv[0], CAP) == 0);
    uint32_t len;
    unsigned char got[1000];
    void *frame;
    int err = fsb_frame_next_len(&r, &len);
    if (!err)
        err = len <= CAP ? fsb_frame_take(&r, len, &frame) : fsb_frame_take_into(&r, got, len);
    fsb_frame_reader_free(&r);
    close(sv[0]);
    return err;
}

static void test_stream_ends_inside_a_frame(void)
{
    CHECK(read_cut_frame(2, 2) == -EPIPE);    /* inside the length */
    CHECK(read_cut_frame(2, 12) == -EPIPE);   /* a frame that fits the buffer */
    CHECK(read_cut_frame(12, 500) == -EPIPE); /* one that does not */
}

int main(void)
{
    static const struct unit_test tests[] = {
        TEST(test_frames_of_every_size),
        TEST(test_buffered_tells_what_follows),
        TEST(test_stream_in_single_bytes),
        TEST(test_stream_ends_inside_a_frame),
    };
    return RUN_TESTS(tests);
}
