/*
 * test_created_handles.c - the handles of files a session without opens
 * created (engine/created_handles.h): ids never reused, the last
 * CREATED_OPEN_MAX kept, the oldest let go (released by its last user,
 * never under one), RELEASE of live and unknown ids.
 */
#include <stdbool.h>
#include <stdint.h>

#include "engine/created_handles.h"
#include "unit_check.h"

/* A backend that only counts which handles it was asked to release. */
static bool released[1000];
static int releases;

static int count_release(struct fsb_backend *be, uint64_t fh)
{
    (void)be;
    CHECK(fh < 1000 && !released[fh]);
    released[fh] = true;
    releases++;
    return 0;
}

static const struct fsb_backend_ops ops = { .release = count_release };
static struct fsb_backend be = { .ops = &ops };

static void reset(void)
{
    for (unsigned i = 0; i < 1000; i++)
        released[i] = false;
    releases = 0;
}

static struct fsb_created_handles *table_of(unsigned n, uint64_t *ids)
{
    reset();
    struct fsb_created_handles *t = fsb_created_new(&be);
    CHECK(t != NULL);
    for (unsigned i = 0; i < n; i++) {
        CHECK(fsb_created_add(t, 100 + i, &ids[i]) == 0);
        CHECK(fsb_created_is_id(ids[i]));
    }
    return t;
}

static void test_ids_are_tagged_and_never_reused(void)
{
    uint64_t ids[3];
    struct fsb_created_handles *t = table_of(3, ids);
    CHECK(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);
    fsb_created_release(t, ids[2]);
    uint64_t again;
    CHECK(fsb_created_add(t, 103, &again) == 0);
    CHECK(again != ids[2]);
    CHECK(!fsb_created_is_id(0) && !fsb_created_is_id(5) && !fsb_created_is_id(UINT64_MAX) &&
          !fsb_created_is_id(FSB_CREATED_FH) && !fsb_created_is_id(1ull << 63 | 7));
    fsb_created_free(t);
}

static void test_the_oldest_is_let_go_past_the_bound(void)
{
    uint64_t ids[CREATED_OPEN_MAX + 2], fh;
    struct fsb_created_entry *use;
    struct fsb_created_handles *t = table_of(CREATED_OPEN_MAX + 2, ids);
    CHECK(releases == 2 && released[100] && released[101]);
    CHECK(!fsb_created_take(t, ids[0], &fh, &use) && use == NULL);
    CHECK(!fsb_created_take(t, ids[1], &fh, &use));
    CHECK(fsb_created_take(t, ids[2], &fh, &use) && fh == 102);
    fsb_created_give(t, use);
    CHECK(fsb_created_take(t, ids[CREATED_OPEN_MAX + 1], &fh, &use) &&
          fh == 100 + CREATED_OPEN_MAX + 1);
    fsb_created_give(t, use);
    fsb_created_free(t);
    CHECK(releases == CREATED_OPEN_MAX + 2);
}

static void test_a_handle_in_use_is_released_by_its_last_user(void)
{
    uint64_t ids[CREATED_OPEN_MAX], fh, extra;
    struct fsb_created_entry *a, *b, *late;
    struct fsb_created_handles *t = table_of(CREATED_OPEN_MAX, ids);
    CHECK(fsb_created_take(t, ids[0], &fh, &a) && fh == 100);
    CHECK(fsb_created_take(t, ids[0], &fh, &b) && b == a);
    CHECK(fsb_created_add(t, 500, &extra) == 0); /* ids[0] is let go, in use twice */
    CHECK(releases == 0);
    CHECK(!fsb_created_take(t, ids[0], &fh, &late)); /* and gets no new user */
    fsb_created_give(t, b);
    CHECK(releases == 0);
    fsb_created_give(t, a);
    CHECK(releases == 1 && released[100]);
    fsb_created_free(t);
    CHECK(releases == CREATED_OPEN_MAX + 1);
}

static void test_release_ends_a_live_id_and_ignores_others(void)
{
    uint64_t ids[4], fh;
    struct fsb_created_entry *use, *other;
    struct fsb_created_handles *t = table_of(4, ids);
    CHECK(fsb_created_take(t, ids[1], &fh, &use));
    fsb_created_release(t, ids[1]); /* a hostile RELEASE under a request */
    CHECK(releases == 0);
    CHECK(!fsb_created_take(t, ids[1], &fh, &other));
    fsb_created_give(t, use);
    CHECK(releases == 1 && released[101]);
    fsb_created_release(t, ids[3] + 1000); /* never given out */
    fsb_created_release(t, ids[2]);
    CHECK(releases == 2 && released[102]);
    fsb_created_free(t);
    CHECK(releases == 4);
}

int main(void)
{
    static const struct unit_test tests[] = {
        TEST(test_ids_are_tagged_and_never_reused),
        TEST(test_the_oldest_is_let_go_past_the_bound),
        TEST(test_a_handle_in_use_is_released_by_its_last_user),
        TEST(test_release_ends_a_live_id_and_ignores_others),
    };
    return RUN_TESTS(tests);
}
