/*
 * halt_poll.c - see halt_poll.h.
 */
#include "common/halt_poll.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <time.h>

void fsb_halt_poll_init(struct fsb_halt_poll *hp, unsigned max_us)
{
    uint64_t max_ns = (uint64_t)max_us * 1000;
    *hp = (struct fsb_halt_poll){ .max_ns = max_ns > UINT32_MAX ? UINT32_MAX : (uint32_t)max_ns };
}

uint64_t fsb_halt_poll_now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

bool fsb_halt_poll_spin(struct fsb_halt_poll *hp, bool (*ready)(void *), void *arg,
                        uint64_t start_ns)
{
    hp->waits++;
    if (hp->cur_ns == 0)
        return false;
    do {
        if (ready(arg))
            return true;
        /* The message may have to come from a thread waiting for this CPU
         * (everything on one CPU, or more runnable threads than CPUs):
         * let it run rather than spin it out.  Nearly free otherwise. */
        sched_yield();
    } while (fsb_halt_poll_now_ns() - start_ns < hp->cur_ns);
    return false;
}

void fsb_halt_poll_caught(struct fsb_halt_poll *hp)
{
    hp->caught++;
}

static void grow(struct fsb_halt_poll *hp)
{
    uint64_t next = hp->cur_ns ? (uint64_t)hp->cur_ns * 2 : FSB_HALT_POLL_START_NS;
    hp->cur_ns = next > hp->max_ns ? hp->max_ns : (uint32_t)next;
}

void fsb_halt_poll_slept(struct fsb_halt_poll *hp, uint64_t waited_ns)
{
    if (hp->max_ns == 0)
        return;
    if (waited_ns > hp->max_ns)
        hp->cur_ns /= 2;
    else if (hp->cur_ns < hp->max_ns)
        grow(hp);
}

static bool fd_readable(void *arg)
{
    struct pollfd p = { .fd = *(int *)arg, .events = POLLIN };
    return poll(&p, 1, 0) > 0;
}

static int sleep_until_readable(int fd)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    while (poll(&p, 1, -1) < 0)
        if (errno != EINTR)
            return -errno;
    return 0;
}

int fsb_halt_poll_wait_fd(struct fsb_halt_poll *hp, int fd)
{
    if (!hp || hp->max_ns == 0)
        return sleep_until_readable(fd);
    uint64_t start = fsb_halt_poll_now_ns();
    if (fsb_halt_poll_spin(hp, fd_readable, &fd, start)) {
        fsb_halt_poll_caught(hp);
        return 0;
    }
    int err = sleep_until_readable(fd);
    fsb_halt_poll_slept(hp, fsb_halt_poll_now_ns() - start);
    return err;
}
