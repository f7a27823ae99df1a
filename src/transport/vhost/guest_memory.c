/*
 * guest_memory.c - see guest_memory.h.
 */
#include "transport/vhost/guest_memory.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

struct guest_memory *guest_memory_new(void)
{
    struct guest_memory *m = calloc(1, sizeof(*m));
    if (m)
        atomic_init(&m->refs, 1);
    return m;
}

struct guest_memory *guest_memory_get(struct guest_memory *m)
{
    atomic_fetch_add(&m->refs, 1);
    return m;
}

static void mapping_put(struct guest_mapping *map)
{
    if (atomic_fetch_sub(&map->refs, 1) == 1) {
        munmap(map->addr, map->size);
        free(map);
    }
}

void guest_memory_put(struct guest_memory *m)
{
    if (!m || atomic_fetch_sub(&m->refs, 1) != 1)
        return;
    for (unsigned i = 0; i < m->nregions; i++)
        mapping_put(m->regions[i].map);
    free(m);
}

/* A copy of M sharing its mappings. */
static struct guest_memory *copy_table(const struct guest_memory *m)
{
    struct guest_memory *c = malloc(sizeof(*c));
    if (!c)
        return NULL;
    memcpy(c, m, sizeof(*c));
    atomic_init(&c->refs, 1);
    for (unsigned i = 0; i < c->nregions; i++)
        atomic_fetch_add(&c->regions[i].map->refs, 1);
    return c;
}

static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return a < b + blen && b < a + alen;
}

/* Checks a new region against overflow and the regions already there. */
static bool region_fits(const struct guest_memory *m, uint64_t gpa, uint64_t size, uint64_t uva,
                        uint64_t mmap_offset)
{
    if (size == 0 || gpa + size < gpa || uva + size < uva || mmap_offset + size < mmap_offset ||
        mmap_offset + size > SIZE_MAX)
        return false;
    for (unsigned i = 0; i < m->nregions; i++) {
        const struct guest_region *r = &m->regions[i];
        if (ranges_overlap(gpa, size, r->gpa, r->size) || ranges_overlap(uva, size, r->uva, r->size))
            return false;
    }
    return true;
}

/* A file must hold the whole region: a mapping past its end would raise
 * SIGBUS at the first access.  (A frontend that shrinks the file later
 * could still do that; QEMU seals its memfds against shrinking.) */
static bool file_holds(int fd, uint64_t end)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return false;
    return !S_ISREG(st.st_mode) || end <= (uint64_t)st.st_size;
}

/* mmap_offset need not be page aligned: map from 0 and point past it, as
 * libvhost-user does. */
static struct guest_mapping *map_region(int fd, uint64_t mmap_offset, uint64_t size, int *err)
{
    if (!file_holds(fd, mmap_offset + size)) {
        *err = -EINVAL;
        return NULL;
    }
    struct guest_mapping *map = malloc(sizeof(*map));
    if (!map) {
        *err = -ENOMEM;
        return NULL;
    }
    map->size = (size_t)(mmap_offset + size);
    map->addr = mmap(NULL, map->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (map->addr == MAP_FAILED) {
        *err = -errno;
        free(map);
        return NULL;
    }
    atomic_init(&map->refs, 1);
    return map;
}

struct guest_memory *guest_memory_with_region(const struct guest_memory *m, uint64_t gpa,
                                              uint64_t size, uint64_t uva, uint64_t mmap_offset,
                                              int fd, int *err)
{
    if (m->nregions == GUEST_MEMORY_MAX_REGIONS) {
        *err = -ENOSPC;
        return NULL;
    }
    if (!region_fits(m, gpa, size, uva, mmap_offset)) {
        *err = -EINVAL;
        return NULL;
    }
    struct guest_mapping *map = map_region(fd, mmap_offset, size, err);
    if (!map)
        return NULL;
    struct guest_memory *c = copy_table(m);
    if (!c) {
        mapping_put(map);
        *err = -ENOMEM;
        return NULL;
    }
    c->regions[c->nregions++] = (struct guest_region){
        .gpa = gpa, .size = size, .uva = uva,
        .hva = (uint8_t *)map->addr + mmap_offset, .map = map,
    };
    return c;
}

struct guest_memory *guest_memory_without_region(const struct guest_memory *m, uint64_t gpa,
                                                 uint64_t size, uint64_t uva, int *err)
{
    for (unsigned i = 0; i < m->nregions; i++) {
        const struct guest_region *r = &m->regions[i];
        if (r->gpa != gpa || r->size != size || r->uva != uva)
            continue;
        struct guest_memory *c = copy_table(m);
        if (!c) {
            *err = -ENOMEM;
            return NULL;
        }
        mapping_put(c->regions[i].map);
        c->regions[i] = c->regions[--c->nregions];
        return c;
    }
    *err = -ENOENT;
    return NULL;
}

/* The region holding START, or NULL.  Written so that no sum can wrap. */
static const struct guest_region *find_region(const struct guest_memory *m, uint64_t start,
                                              bool physical)
{
    for (unsigned i = 0; i < m->nregions; i++) {
        const struct guest_region *r = &m->regions[i];
        uint64_t base = physical ? r->gpa : r->uva;
        if (start >= base && start - base < r->size)
            return r;
    }
    return NULL;
}

static void *translate_whole(const struct guest_memory *m, uint64_t addr, uint64_t len,
                             bool physical)
{
    const struct guest_region *r = find_region(m, addr, physical);
    if (!r)
        return NULL;
    uint64_t off = addr - (physical ? r->gpa : r->uva);
    if (len > r->size - off)
        return NULL;
    return r->hva + off;
}

void *guest_memory_uva(const struct guest_memory *m, uint64_t uva, uint64_t len)
{
    return translate_whole(m, uva, len, false);
}

void *guest_memory_gpa(const struct guest_memory *m, uint64_t gpa, uint64_t len)
{
    return translate_whole(m, gpa, len, true);
}

int guest_memory_map(const struct guest_memory *m, uint64_t gpa, uint64_t len, struct iovec *iov,
                     int max)
{
    int n = 0;
    while (len > 0) {
        const struct guest_region *r = find_region(m, gpa, true);
        if (!r || n == max)
            return -1;
        uint64_t off = gpa - r->gpa;
        uint64_t piece = r->size - off < len ? r->size - off : len;
        iov[n++] = (struct iovec){ .iov_base = r->hva + off, .iov_len = (size_t)piece };
        gpa += piece; /* cannot wrap: piece ends inside a checked region */
        len -= piece;
    }
    return n;
}
