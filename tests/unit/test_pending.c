/*
 * test_pending.c - the relay's set of requests in flight (mount/pending.h):
 * its bound, which pending_add() waits at and pending_try_add() does not
 * (a thread that reads its own connection must read while it waits,
 * relay.c), and its closing.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "mount/pending.h"
#include "unit_check.h"

static struct reply_dest *dest = (struct reply_dest *)&dest; /* any non-NULL address */

static void fill(struct pending *p)
{
    for (uint64_t u = 1; u <= PENDING_MAX; u++)
        CHECK(pending_add(p, u * 2, dest) == 0);
}

static void test_try_add_says_full_and_takes_once_there_is_room(void)
{
    static struct pending p;
    pending_init(&p);
    fill(&p);
    CHECK(pending_try_add(&p, 9999, dest) == -EAGAIN);
    CHECK(pending_find(&p, 9999) == NULL);
    CHECK(pending_take(&p, 2) == dest);
    CHECK(pending_try_add(&p, 9999, dest) == 0);
    CHECK(pending_find(&p, 9999) == dest);
    CHECK(pending_try_add(&p, 10001, dest) == -EAGAIN);
}

static _Atomic int added;

static void *add_one(void *arg)
{
    atomic_store(&added, pending_add(arg, 7777, dest) == 0 ? 1 : -1);
    return NULL;
}

static void test_add_waits_for_room(void)
{
    static struct pending p;
    pending_init(&p);
    fill(&p);
    pthread_t t;
    pthread_create(&t, NULL, add_one, &p);
    usleep(50 * 1000);
    CHECK(atomic_load(&added) == 0); /* still waiting */
    CHECK(pending_take(&p, 4) == dest);
    pthread_join(t, NULL);
    CHECK(atomic_load(&added) == 1);
    CHECK(pending_find(&p, 7777) == dest);
}

static void no_fail(uint64_t unique, struct reply_dest *d, void *arg)
{
    (void)unique, (void)d;
    (*(int *)arg)++;
}

static void test_a_closed_set_refuses_either_way(void)
{
    static struct pending p;
    pending_init(&p);
    fill(&p);
    int failed = 0;
    pending_close(&p, no_fail, &failed);
    CHECK(failed == PENDING_MAX);
    CHECK(pending_try_add(&p, 1, dest) == -ENOTCONN);
    CHECK(pending_add(&p, 3, dest) == -ENOTCONN);
}

int main(void)
{
    static const struct unit_test tests[] = {
        TEST(test_try_add_says_full_and_takes_once_there_is_room),
        TEST(test_add_waits_for_room),
        TEST(test_a_closed_set_refuses_either_way),
    };
    return RUN_TESTS(tests);
}
