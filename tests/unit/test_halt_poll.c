/*
 * test_halt_poll.c - the adaptive spin of common/halt_poll.h: the window
 * follows KVM's rule (stays when the spin caught the event, grows when the
 * event came soon after the spin gave up, halves after a long sleep), a
 * waiter with polling off never spins, and a wait on a real socket is
 * caught by the spin or ends in a sleep as it should.
 */
#include "unit_check.h"
#include "common/halt_poll.h"

#include <pthread.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void test_window_grows_to_the_limit_and_halves_when_idle(void)
{
    struct fsb_halt_poll hp;
    fsb_halt_poll_init(&hp, 50);
    CHECK(hp.max_ns == 50000 && hp.cur_ns == 0);
    fsb_halt_poll_slept(&hp, 3000);        /* came soon after: spin longer */
    CHECK(hp.cur_ns == FSB_HALT_POLL_START_NS);
    fsb_halt_poll_slept(&hp, 15000);
    CHECK(hp.cur_ns == 2 * FSB_HALT_POLL_START_NS);
    fsb_halt_poll_slept(&hp, 45000);
    fsb_halt_poll_slept(&hp, 45000);
    CHECK(hp.cur_ns == 50000);             /* capped */
    fsb_halt_poll_caught(&hp);
    CHECK(hp.cur_ns == 50000 && hp.caught == 1);
    fsb_halt_poll_slept(&hp, 1000000000);  /* an idle second: shrink */
    CHECK(hp.cur_ns == 25000);
    for (int i = 0; i < 20; i++)
        fsb_halt_poll_slept(&hp, 1000000000);
    CHECK(hp.cur_ns == 0);
}

static void test_polling_off_never_spins(void)
{
    struct fsb_halt_poll hp;
    fsb_halt_poll_init(&hp, 0);
    fsb_halt_poll_slept(&hp, 1000);
    CHECK(hp.cur_ns == 0);
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(write(sv[1], "x", 1) == 1);
    CHECK(fsb_halt_poll_wait_fd(&hp, sv[0]) == 0);
    CHECK(hp.waits == 0);                  /* straight to poll() */
    close(sv[0]);
    close(sv[1]);
}

static void *write_later(void *arg)
{
    struct timespec t = { 0, 200 * 1000000 };
    nanosleep(&t, NULL);
    if (write(*(int *)arg, "x", 1) != 1)
        return NULL;
    return arg;
}

static void test_waits_on_a_socket(void)
{
    struct fsb_halt_poll hp;
    fsb_halt_poll_init(&hp, 100);
    hp.cur_ns = 100000;
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(write(sv[1], "x", 1) == 1);
    CHECK(fsb_halt_poll_wait_fd(&hp, sv[0]) == 0);
    CHECK(hp.waits == 1 && hp.caught == 1 && hp.cur_ns == 100000);
    char c;
    CHECK(read(sv[0], &c, 1) == 1);
    /* Nothing for 200 ms: the spin gives up, the sleep ends with the byte,
     * and the window halves. */
    pthread_t t;
    pthread_create(&t, NULL, write_later, &sv[1]);
    uint64_t t0 = fsb_halt_poll_now_ns();
    CHECK(fsb_halt_poll_wait_fd(&hp, sv[0]) == 0);
    CHECK(fsb_halt_poll_now_ns() - t0 >= 150000000);
    CHECK(hp.waits == 2 && hp.caught == 1 && hp.cur_ns == 50000);
    pthread_join(t, NULL);
    close(sv[0]);
    close(sv[1]);
}

int main(void)
{
    static const struct unit_test tests[] = {
        TEST(test_window_grows_to_the_limit_and_halves_when_idle),
        TEST(test_polling_off_never_spins),
        TEST(test_waits_on_a_socket),
    };
    return RUN_TESTS(tests);
}
