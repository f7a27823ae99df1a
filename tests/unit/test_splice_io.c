/*
 * test_splice_io.c - common/splice_io.h over real files, pipes and
 * sockets: a file's bytes through a pipe into a socket are the file's, at
 * unaligned offsets and with a short count at end of file; a pipe too
 * small for what is asked is an error that leaves it empty, not a hang;
 * and the frame reader's probe reads leave a large frame's body in the
 * socket for the caller (fsb_frame_take_head), as the relay splices it.
 */
#include "unit_check.h"
#include "common/fdio.h"
#include "common/splice_io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define FILE_SIZE (300 * 1024 + 123)

static unsigned char byte_at(size_t i)
{
    return (unsigned char)(i * 7 + i / 4096);
}

/* A temporary file of FILE_SIZE bytes, already unlinked. */
static int make_file(void)
{
    char path[] = "/tmp/fsb-splice-XXXXXX";
    int fd = mkstemp(path);
    unlink(path);
    static unsigned char data[FILE_SIZE];
    for (size_t i = 0; i < FILE_SIZE; i++)
        data[i] = byte_at(i);
    CHECK(fd >= 0 && fsb_write_full(fd, data, FILE_SIZE) == 0);
    return fd;
}

static void pair(int sv[2])
{
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
}

/* LEN bytes of the file at OFF through a pipe into a socket; true if the
 * socket then holds exactly the file's bytes (WANT of them). */
static bool file_through_pipe(int file, off_t off, size_t len, size_t want)
{
    struct fsb_pipe p;
    int sv[2];
    pair(sv);
    CHECK(fsb_pipe_open(&p, 1 << 20) == 0);
    CHECK(fsb_pipe_file_slots(len, off) <= p.slots);
    off_t at = off;
    ssize_t n = fsb_splice_in(file, &at, &p, len);
    bool ok = n == (ssize_t)want && at == off + (off_t)want;
    ok = ok && fsb_splice_out(&p, sv[1], want, SPLICE_F_MOVE, NULL) == 0;
    unsigned char *got = malloc(want + 1);
    ok = ok && fsb_read_full(sv[0], got, want) == 0;
    for (size_t i = 0; ok && i < want; i++)
        ok = got[i] == byte_at((size_t)off + i);
    free(got);
    fsb_pipe_close(&p);
    close(sv[0]);
    close(sv[1]);
    return ok;
}

static void test_file_bytes_arrive_exactly(void)
{
    int fd = make_file();
    CHECK(file_through_pipe(fd, 0, 128 * 1024, 128 * 1024));
    CHECK(file_through_pipe(fd, 4097, 100 * 1024 + 3, 100 * 1024 + 3));
    CHECK(file_through_pipe(fd, FILE_SIZE - 1000, 64 * 1024, 1000)); /* end of file */
    CHECK(file_through_pipe(fd, FILE_SIZE, 64 * 1024, 0));
    close(fd);
}

static void test_slots(void)
{
    long page = sysconf(_SC_PAGESIZE);
    CHECK(fsb_pipe_file_slots((size_t)page, 0) == 1);
    CHECK(fsb_pipe_file_slots((size_t)page, 1) == 2);
    CHECK(fsb_pipe_file_slots(1, (off_t)page - 1) == 1);
    CHECK(fsb_pipe_stream_slots((size_t)page) == 4);
}

/* A pipe of 16 pages asked for 64: ENOSPC, nothing left in it. */
static void test_full_pipe_is_an_error(void)
{
    int fd = make_file();
    struct fsb_pipe p;
    CHECK(fsb_pipe_open(&p, 16 * (size_t)sysconf(_SC_PAGESIZE)) == 0);
    off_t at = 0;
    CHECK(fsb_splice_in(fd, &at, &p, 64 * (size_t)sysconf(_SC_PAGESIZE)) == -ENOSPC);
    int held = -1;
    CHECK(ioctl(p.rd, FIONREAD, &held) == 0 && held == 0);
    fsb_pipe_close(&p);
    close(fd);
}

/* A frame of 200 bytes behind probe reads of 8: the reader holds at most 8
 * of it, the caller reads the rest from the socket. */
static void test_probe_reads_leave_the_body(void)
{
    int sv[2];
    pair(sv);
    unsigned char frame[200];
    uint32_t len = sizeof(frame);
    memcpy(frame, &len, sizeof(len));
    for (size_t i = sizeof(len); i < sizeof(frame); i++)
        frame[i] = (unsigned char)i;
    CHECK(fsb_write_full(sv[1], frame, sizeof(frame)) == 0);
    struct fsb_frame_reader r;
    CHECK(fsb_frame_reader_init(&r, sv[0], 1024) == 0);
    r.probe_max = 8;
    uint32_t next;
    const void *head;
    CHECK(fsb_frame_next_len(&r, &next) == 0 && next == sizeof(frame));
    CHECK(fsb_frame_peek(&r, 6, &head) == 0 && memcmp(head, frame, 6) == 0);
    void *taken;
    size_t have = fsb_frame_take_head(&r, next, &taken);
    CHECK(have >= 6 && have <= 8 && memcmp(taken, frame, have) == 0);
    unsigned char rest[200];
    CHECK(fsb_read_full(sv[0], rest, sizeof(frame) - have) == 0);
    CHECK(memcmp(rest, frame + have, sizeof(frame) - have) == 0);
    CHECK(fsb_frame_buffered(&r) == 0);
    fsb_frame_reader_free(&r);
    close(sv[0]);
    close(sv[1]);
}

int main(void)
{
    static const struct unit_test tests[] = {
        TEST(test_file_bytes_arrive_exactly),
        TEST(test_slots),
        TEST(test_full_pipe_is_an_error),
        TEST(test_probe_reads_leave_the_body),
    };
    return RUN_TESTS(tests);
}
