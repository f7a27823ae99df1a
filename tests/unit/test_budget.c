/*
 * test_budget.c - the per-guest budgets and the guests' fd pool
 * (src/common/budget.c): a budget is never passed, a refusal takes
 * nothing, the pool refuses with ENFILE whoever asks, and a reader waiting
 * for room wakes when the guest drains or is told to stop.
 */
#include "common/budget.h"
#include "unit_check.h"

#include <errno.h>
#include <pthread.h>
#include <unistd.h>

static const struct fsb_budget_limits limits = {
    .max = { [FSB_BUDGET_OPEN] = 3, [FSB_BUDGET_INODES] = 2, [FSB_BUDGET_QUEUED] = 100,
             [FSB_BUDGET_THREADS] = 1, [FSB_BUDGET_SESSIONS] = 2 },
};

static void test_a_budget_is_never_passed(void)
{
    struct fsb_guest g;
    fsb_guest_init(&g, "test", &limits);
    fsb_fd_pool_init(0);
    CHECK(fsb_guest_take(&g, FSB_BUDGET_OPEN, 2) == 0);
    CHECK(fsb_guest_take(&g, FSB_BUDGET_OPEN, 2) == -EMFILE); /* takes nothing */
    CHECK(fsb_guest_take(&g, FSB_BUDGET_OPEN, 1) == 0);
    CHECK(fsb_guest_take(&g, FSB_BUDGET_OPEN, 1) == -EMFILE);
    CHECK(fsb_guest_used(&g, FSB_BUDGET_OPEN) == 3);
    fsb_guest_give(&g, FSB_BUDGET_OPEN, 1);
    CHECK(fsb_guest_take(&g, FSB_BUDGET_OPEN, 1) == 0);
    CHECK(fsb_guest_take(&g, FSB_BUDGET_INODES, 3) == -ENFILE);
    CHECK(fsb_guest_take(&g, FSB_BUDGET_THREADS, 1) == 0);
    CHECK(fsb_guest_take(&g, FSB_BUDGET_THREADS, 1) == -EAGAIN);
    CHECK(fsb_guest_take(&g, FSB_BUDGET_SESSIONS, 2) == 0);
    CHECK(fsb_guest_take(&g, FSB_BUDGET_SESSIONS, 1) == -EAGAIN);
    fsb_guest_give(&g, FSB_BUDGET_OPEN, 3); /* the pool counts them too */
    fsb_guest_destroy(&g);
}

static void test_the_pool_is_shared_by_every_guest(void)
{
    struct fsb_guest a, b;
    fsb_guest_init(&a, "a", &limits);
    fsb_guest_init(&b, "b", &limits);
    fsb_fd_pool_init(4);
    CHECK(fsb_guest_take(&a, FSB_BUDGET_OPEN, 3) == 0);
    CHECK(fsb_guest_take(&b, FSB_BUDGET_OPEN, 1) == 0);
    CHECK(fsb_guest_take(&b, FSB_BUDGET_OPEN, 1) == -ENFILE); /* the pool, not b's budget */
    CHECK(fsb_guest_used(&b, FSB_BUDGET_OPEN) == 1);          /* nothing taken */
    CHECK(fsb_guest_take(NULL, FSB_BUDGET_OPEN, 1) == -ENFILE); /* no guest: the pool still */
    fsb_guest_give(&a, FSB_BUDGET_OPEN, 3);
    CHECK(fsb_guest_take(NULL, FSB_BUDGET_OPEN, 1) == 0);
    fsb_guest_give(NULL, FSB_BUDGET_OPEN, 1);
    fsb_guest_give(&b, FSB_BUDGET_OPEN, 1);
    fsb_fd_pool_init(0);
    fsb_guest_destroy(&a);
    fsb_guest_destroy(&b);
}

struct waiter {
    struct fsb_guest *g;
    atomic_bool stop;
    atomic_bool woke;
};

static void *wait_main(void *arg)
{
    struct waiter *w = arg;
    fsb_guest_wait_room(w->g, &w->stop);
    atomic_store(&w->woke, true);
    return NULL;
}

/* Starts a reader waiting for room in G; true if it is still waiting
 * after a moment. */
static bool start_waiter(struct waiter *w, struct fsb_guest *g, pthread_t *t)
{
    *w = (struct waiter){ .g = g };
    pthread_create(t, NULL, wait_main, w);
    usleep(50 * 1000);
    return !atomic_load(&w->woke);
}

static void test_readers_wait_until_the_guest_drains(void)
{
    struct fsb_guest g;
    fsb_guest_init(&g, "reader", &limits);
    struct waiter w;
    pthread_t t;
    fsb_guest_charge(&g, 60);
    CHECK(!start_waiter(&w, &g, &t)); /* under budget: no wait */
    pthread_join(t, NULL);
    fsb_guest_charge(&g, 60); /* 120 of 100 */
    CHECK(start_waiter(&w, &g, &t));
    fsb_guest_give(&g, FSB_BUDGET_QUEUED, 10); /* 110: still over */
    usleep(50 * 1000);
    CHECK(!atomic_load(&w.woke));
    fsb_guest_give(&g, FSB_BUDGET_QUEUED, 60); /* 50: room */
    pthread_join(t, NULL);
    CHECK(atomic_load(&w.woke));
    fsb_guest_charge(&g, 100);
    CHECK(start_waiter(&w, &g, &t));
    atomic_store(&w.stop, true); /* the connection closes */
    fsb_guest_wake_all(&g);
    pthread_join(t, NULL);
    CHECK(atomic_load(&w.woke));
    fsb_guest_destroy(&g);
}

int main(void)
{
    static const struct unit_test tests[] = {
        TEST(test_a_budget_is_never_passed),
        TEST(test_the_pool_is_shared_by_every_guest),
        TEST(test_readers_wait_until_the_guest_drains),
    };
    return RUN_TESTS(tests);
}
