/*
 * halt_poll.h - waiting for the other side the way KVM's halt polling
 * waits for an interrupt: first check without sleeping, for a bounded and
 * adaptive time, then sleep as before.
 *
 * On a small machine the cost of a round trip between two processes is
 * mostly wake-ups: a thread asleep in poll() on another CPU takes tens of
 * microseconds to run again, while the next message often arrives a few
 * microseconds after the wait began.  A waiter that spins that long
 * catches it at the cost of the spin.
 *
 * The window adapts per waiter, with KVM's rule (virt/kvm/kvm_main.c):
 *  - the spin caught the message: the window stays;
 *  - the message came after the spin gave up, but within the largest
 *    window (spinning longer would have caught it): the window grows
 *    (doubles, starting at FSB_HALT_POLL_START_NS);
 *  - it came later than that (an idle peer): the window halves, so a
 *    peer that is mostly idle costs (almost) no spinning.
 * An idle waiter sleeps: it spins once per message, at most the window.
 */
#ifndef FSB_HALT_POLL_H
#define FSB_HALT_POLL_H

#include <stdbool.h>
#include <stdint.h>

#define FSB_HALT_POLL_START_NS 10000u

struct fsb_halt_poll {
    uint32_t max_ns; /* the largest window; 0: never spin */
    uint32_t cur_ns; /* the current window */
    /* Counters for benchmarks (bench/cost.sh): waits, and those a spin caught. */
    uint64_t waits, caught;
};

void fsb_halt_poll_init(struct fsb_halt_poll *hp, unsigned max_us);

/* Spins while READY(ARG) is false, for the current window.  Returns true
 * if READY became true; then fsb_halt_poll_caught() follows.  Otherwise
 * the caller sleeps until the event and calls fsb_halt_poll_slept() with
 * the time from the start of the spin (fsb_halt_poll_now_ns()). */
bool fsb_halt_poll_spin(struct fsb_halt_poll *hp, bool (*ready)(void *), void *arg,
                        uint64_t start_ns);
void fsb_halt_poll_caught(struct fsb_halt_poll *hp);
void fsb_halt_poll_slept(struct fsb_halt_poll *hp, uint64_t waited_ns);

uint64_t fsb_halt_poll_now_ns(void);

/* Waits until FD is readable (or hung up): spins with poll(fd, 0) for the
 * window, then sleeps in poll().  Returns 0 or -errno.  HP NULL: sleeps at
 * once. */
int fsb_halt_poll_wait_fd(struct fsb_halt_poll *hp, int fd);

#endif
