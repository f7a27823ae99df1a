/*
 * test_held_forgets.c - the FORGETs the relay holds back (mount/held_forgets.h):
 * what it keeps, the BATCH_FORGET it builds of them, and its thread that
 * sends them when no request comes.
 */
#include <linux/fuse.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mount/held_forgets.h"
#include "unit_check.h"

static struct held_batch sent;
static _Atomic size_t sent_len;
static _Atomic int sends;

static void capture(void *arg, struct iovec *iov, int cnt)
{
    (void)arg;
    CHECK(cnt == 1 && iov[0].iov_len <= sizeof(sent));
    memcpy(&sent, iov[0].iov_base, iov[0].iov_len);
    atomic_store(&sent_len, iov[0].iov_len);
    atomic_fetch_add(&sends, 1);
}

static bool forget(struct held_forgets *h, uint64_t node, uint64_t nlookup, uint64_t unique)
{
    struct fuse_in_header ih = { .opcode = FUSE_FORGET, .nodeid = node, .unique = unique };
    struct fuse_forget_in in = { .nlookup = nlookup };
    return held_forgets_hold(h, &ih, &in, sizeof(in));
}

static void test_forgets_are_held_and_taken_as_one_batch(void)
{
    struct held_forgets *h = held_forgets_new(capture, NULL);
    struct held_batch b;
    CHECK(held_forgets_take(h, &b) == 0);
    CHECK(forget(h, 5, 1, 100));
    struct {
        struct fuse_batch_forget_in in;
        struct fuse_forget_one one[2];
    } batch = { .in = { .count = 2 }, .one = { { 6, 2 }, { 7, 3 } } };
    struct fuse_in_header ih = { .opcode = FUSE_BATCH_FORGET, .unique = 102 };
    CHECK(held_forgets_hold(h, &ih, &batch, sizeof(batch)));
    size_t len = held_forgets_take(h, &b);
    CHECK(len == sizeof(b.ih) + sizeof(b.in) + 3 * sizeof(b.one[0]));
    CHECK(b.ih.len == len && b.ih.opcode == FUSE_BATCH_FORGET && b.ih.unique == 100);
    CHECK(b.in.count == 3);
    CHECK(b.one[0].nodeid == 5 && b.one[0].nlookup == 1);
    CHECK(b.one[2].nodeid == 7 && b.one[2].nlookup == 3);
    CHECK(held_forgets_take(h, &b) == 0); /* taken */
    held_forgets_free(h);
}

static void test_what_is_not_kept_is_sent(void)
{
    struct held_forgets *h = held_forgets_new(capture, NULL);
    struct fuse_in_header ih = { .opcode = FUSE_LOOKUP, .nodeid = 1, .unique = 2 };
    CHECK(!held_forgets_hold(h, &ih, "x", 2));
    ih.opcode = FUSE_FORGET;
    CHECK(!held_forgets_hold(h, &ih, "x", 2)); /* too short */
    struct fuse_batch_forget_in lying = { .count = 1000 };
    ih.opcode = FUSE_BATCH_FORGET;
    CHECK(!held_forgets_hold(h, &ih, &lying, sizeof(lying))); /* more than it holds */
    for (uint64_t i = 0; i < HELD_FORGETS_MAX; i++)
        CHECK(forget(h, 10 + i, 1, 200 + 2 * i));
    CHECK(!forget(h, 9999, 1, 1)); /* full: the caller sends it after the held ones */
    struct held_batch b;
    CHECK(held_forgets_take(h, &b) > 0 && b.in.count == HELD_FORGETS_MAX);
    CHECK(!held_forgets_hold(NULL, &ih, &lying, sizeof(lying)));
    CHECK(held_forgets_take(NULL, &b) == 0);
    held_forgets_free(h);
}

static void sleep_ms(long ms)
{
    struct timespec t = { ms / 1000, (ms % 1000) * 1000000 };
    nanosleep(&t, NULL);
}

static void test_with_no_request_the_thread_sends_them(void)
{
    struct held_forgets *h = held_forgets_new(capture, NULL);
    atomic_store(&sends, 0);
    sleep_ms(3 * HELD_FORGETS_MS);
    CHECK(atomic_load(&sends) == 0); /* nothing held: nothing sent */
    CHECK(forget(h, 42, 4, 300));
    for (int i = 0; i < 200 && !atomic_load(&sends); i++)
        sleep_ms(5);
    CHECK(atomic_load(&sends) == 1);
    CHECK(sent.ih.opcode == FUSE_BATCH_FORGET && sent.in.count == 1 &&
          sent.one[0].nodeid == 42 && sent.one[0].nlookup == 4);
    sleep_ms(3 * HELD_FORGETS_MS);
    CHECK(atomic_load(&sends) == 1); /* and then sleeps again */
    CHECK(forget(h, 43, 1, 302)); /* woken again */
    for (int i = 0; i < 200 && atomic_load(&sends) < 2; i++)
        sleep_ms(5);
    CHECK(atomic_load(&sends) == 2 && sent.one[0].nodeid == 43);
    held_forgets_free(h);
}

static void test_forgets_that_keep_coming_are_sent_all_the_same(void)
{
    struct held_forgets *h = held_forgets_new(capture, NULL);
    atomic_store(&sends, 0);
    for (int i = 0; i < 40; i++) { /* one every 2 ms, and no request to carry them */
        CHECK(forget(h, 100 + i, 1, 400 + 2 * i));
        sleep_ms(2);
    }
    CHECK(atomic_load(&sends) >= 1); /* not held until the table fills */
    held_forgets_free(h);
}

int main(void)
{
    static const struct unit_test tests[] = {
        TEST(test_forgets_are_held_and_taken_as_one_batch),
        TEST(test_what_is_not_kept_is_sent),
        TEST(test_with_no_request_the_thread_sends_them),
        TEST(test_forgets_that_keep_coming_are_sent_all_the_same),
    };
    return RUN_TESTS(tests);
}
