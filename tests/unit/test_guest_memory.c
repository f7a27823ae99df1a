/*
 * test_guest_memory.c - the vhost-user memory table: what the frontend may
 * describe, and that no translation reaches outside a region.
 */
#include "transport/vhost/guest_memory.h"
#include "unit_check.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096ull
#define UVA 0x7f0000000000ull

static int memfd(uint64_t size)
{
    int fd = memfd_create("guest", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
        abort();
    return fd;
}

/* M plus a region GPA..GPA+SIZE backed by a fresh memfd; M is released. */
static struct guest_memory *with(struct guest_memory *m, uint64_t gpa, uint64_t size,
                                 uint64_t offset, int *err)
{
    int fd = memfd(offset + size);
    struct guest_memory *n = guest_memory_with_region(m, gpa, size, UVA + gpa, offset, fd, err);
    close(fd);
    if (n)
        guest_memory_put(m);
    return n ? n : m;
}

static void test_translation_stays_inside_regions(void)
{
    int err = 0;
    struct guest_memory *m = with(guest_memory_new(), 0, 4 * PAGE, 0, &err);
    CHECK(m->nregions == 1);
    CHECK(guest_memory_gpa(m, 0, 4 * PAGE) == m->regions[0].hva);
    CHECK(guest_memory_gpa(m, PAGE, 3 * PAGE) != NULL);
    CHECK(guest_memory_gpa(m, PAGE, 3 * PAGE + 1) == NULL); /* one byte past */
    CHECK(guest_memory_gpa(m, 4 * PAGE, 1) == NULL);
    CHECK(guest_memory_gpa(m, 1, UINT64_MAX) == NULL);      /* would wrap */
    CHECK(guest_memory_uva(m, UVA, PAGE) == m->regions[0].hva);
    CHECK(guest_memory_uva(m, 0, PAGE) == NULL);            /* gpa is not a uva */
    struct iovec iov[4];
    CHECK(guest_memory_map(m, 2 * PAGE, 2 * PAGE, iov, 4) == 1);
    CHECK(guest_memory_map(m, 2 * PAGE, 2 * PAGE + 1, iov, 4) == -1);
    CHECK(guest_memory_map(m, UINT64_MAX - 10, 20, iov, 4) == -1);
    guest_memory_put(m);
}

static void test_adjacent_regions_give_two_pieces(void)
{
    int err = 0;
    struct guest_memory *m = with(with(guest_memory_new(), 0, PAGE, 0, &err), PAGE, PAGE, 0, &err);
    CHECK(m->nregions == 2);
    struct iovec iov[2];
    CHECK(guest_memory_map(m, PAGE / 2, PAGE, iov, 2) == 2);
    CHECK(iov[0].iov_len == PAGE / 2 && iov[1].iov_len == PAGE / 2);
    CHECK(iov[1].iov_base == m->regions[1].hva);
    CHECK(guest_memory_map(m, PAGE / 2, PAGE, iov, 1) == -1); /* no room */
    CHECK(guest_memory_gpa(m, PAGE / 2, PAGE) == NULL);       /* tables must not span */
    guest_memory_put(m);
}

static void test_bad_regions_are_refused(void)
{
    int err = 0;
    struct guest_memory *m = with(guest_memory_new(), PAGE, 2 * PAGE, 0, &err);
    struct guest_memory *same = m;
    CHECK(with(m, 2 * PAGE, PAGE, 0, &err) == same && err == -EINVAL);  /* overlaps */
    CHECK(with(m, 0, 0, 0, &err) == same && err == -EINVAL);            /* empty */
    CHECK(with(m, UINT64_MAX - PAGE + 1, PAGE, 0, &err) == same && err == -EINVAL); /* wraps */
    CHECK(m->nregions == 1);
    /* A non-page-aligned mmap_offset is allowed: the table points past it. */
    m = with(m, 8 * PAGE, PAGE, 100, &err);
    CHECK(m->nregions == 2);
    guest_memory_put(m);
}

static void test_removal_keeps_memory_of_older_tables(void)
{
    int err = 0;
    struct guest_memory *m = with(with(guest_memory_new(), 0, PAGE, 0, &err), PAGE, PAGE, 0, &err);
    struct guest_memory *old = guest_memory_get(m);
    uint8_t *p = guest_memory_gpa(old, 0, PAGE);
    struct guest_memory *n = guest_memory_without_region(m, 0, PAGE, UVA, &err);
    CHECK(n && n->nregions == 1 && guest_memory_gpa(n, 0, 1) == NULL);
    CHECK(guest_memory_without_region(m, 0, 2 * PAGE, UVA, &err) == NULL && err == -ENOENT);
    guest_memory_put(m);
    guest_memory_put(n);
    p[0] = 1; /* the region is still mapped: OLD holds it (ASan would catch a use after unmap) */
    CHECK(p[0] == 1);
    guest_memory_put(old);
}

int main(void)
{
    static const struct unit_test tests[] = {
        TEST(test_translation_stays_inside_regions),
        TEST(test_adjacent_regions_give_two_pieces),
        TEST(test_bad_regions_are_refused),
        TEST(test_removal_keeps_memory_of_older_tables),
    };
    return RUN_TESTS(tests);
}
