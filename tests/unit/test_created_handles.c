/*
 * test_created_handles.c - the handles of files a session without opens
 * created (engine/created_handles.h): ids never reused, the last
 * CREATED_OPEN_MAX kept, the oldest with a name let go (released by its
 * last user, never under one), nameless files kept until their FORGET,
 * RELEASE of live and unknown ids.
 */
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "engine/created_handles.h"
#include "unit_check.h"

/* A backend that counts which handles it was asked to release, and
 * tells how many names each handle's file has (fh N is node N + 1000). */
static bool released[1000];
static bool nameless[1000];
static int releases;

static int links_of(struct fsb_backend *be, uint64_t node, uint64_t fh, struct stat *st)
{
    (void)be;
    CHECK(fh < 1000 && node == fh + 1000);
    *st = (struct stat){ .st_nlink = nameless[fh] ? 0 : 1 };
    return 0;
}

static int count_release(struct fsb_backend *be, uint64_t fh)
{
    (void)be;
    CHECK(fh < 1000 && !released[fh]);
    released[fh] = true;
    releases++;
    return 0;
}

static const struct fsb_backend_ops ops = { .release = count_release, .getattr = links_of };
static struct fsb_backend be = { .ops = &ops };

static void reset(void)
{
    for (unsigned i = 0; i < 1000; i++)
        released[i] = nameless[i] = false;
    releases = 0;
}

static struct fsb_created_handles *table_of(unsigned n, uint64_t *ids)
{
    reset();
    struct fsb_created_handles *t = fsb_created_new(&be);
    CHECK(t != NULL);
    for (unsigned i = 0; i < n; i++) {
        CHECK(fsb_created_add(t, 1100 + i, 100 + i, &ids[i]) == 0);
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
    CHECK(fsb_created_add(t, 1103, 103, &again) == 0);
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
    CHECK(fsb_created_add(t, 1500, 500, &extra) == 0); /* ids[0] is let go, in use twice */
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

static void test_a_nameless_file_stays_until_its_forget(void)
{
    uint64_t ids[CREATED_OPEN_MAX + 1], fh, extra;
    struct fsb_created_entry *use;
    reset();
    nameless[100] = true; /* the first one is unlinked (or an O_TMPFILE) */
    struct fsb_created_handles *t = fsb_created_new(&be);
    for (unsigned i = 0; i <= CREATED_OPEN_MAX; i++)
        CHECK(fsb_created_add(t, 1100 + i, 100 + i, &ids[i]) == 0);
    CHECK(releases == 0); /* its turn came: kept, among the nameless */
    CHECK(fsb_created_take(t, ids[0], &fh, &use) && fh == 100);
    fsb_created_give(t, use);
    CHECK(fsb_created_add(t, 1500, 500, &extra) == 0);
    CHECK(releases == 1 && released[101] && !released[100]); /* 32 named again */
    fsb_created_forget(t, 1100); /* no file of it is open any more */
    CHECK(releases == 2 && released[100]);
    CHECK(!fsb_created_take(t, ids[0], &fh, &use));
    fsb_created_forget(t, 1100); /* again: nothing */
    CHECK(releases == 2);
    fsb_created_free(t);
    CHECK(releases == 2 + CREATED_OPEN_MAX);
}

int main(void)
{
    static const struct unit_test tests[] = {
        TEST(test_ids_are_tagged_and_never_reused),
        TEST(test_the_oldest_is_let_go_past_the_bound),
        TEST(test_a_handle_in_use_is_released_by_its_last_user),
        TEST(test_release_ends_a_live_id_and_ignores_others),
        TEST(test_a_nameless_file_stays_until_its_forget),
    };
    return RUN_TESTS(tests);
}
