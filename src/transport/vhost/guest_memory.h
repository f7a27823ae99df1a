/*
 * guest_memory.h - the guest's RAM as the vhost-user frontend shares it.
 *
 * The frontend sends a memory table: regions of guest-physical addresses,
 * each backed by an fd we map MAP_SHARED.  Descriptor addresses in the rings
 * are guest-physical; the ring addresses themselves arrive in the
 * frontend's virtual address space.  Every translation checks that the
 * whole range lies inside the regions; nothing else of ours is reachable
 * from a guest address.
 *
 * A table is immutable once published and reference counted: a request
 * keeps the table it was mapped with until its reply is written, so a
 * SET_MEM_TABLE or REM_MEM_REG arriving meanwhile never unmaps memory under
 * a running request.  Mappings are shared between tables (ADD_MEM_REG
 * copies the table, not the memory) and unmapped with their last table.
 */
#ifndef FSB_GUEST_MEMORY_H
#define FSB_GUEST_MEMORY_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* QEMU's limit for ADD_MEM_REG (GET_MAX_MEM_SLOTS); SET_MEM_TABLE has 8. */
#define GUEST_MEMORY_MAX_REGIONS 32

struct guest_mapping {
    atomic_uint refs;
    void *addr;
    size_t size;
};

struct guest_region {
    uint64_t gpa;        /* guest-physical start */
    uint64_t size;
    uint64_t uva;        /* the frontend's virtual address of gpa */
    uint8_t *hva;        /* our address of gpa */
    struct guest_mapping *map;
};

struct guest_memory {
    atomic_uint refs;
    unsigned nregions;
    struct guest_region regions[GUEST_MEMORY_MAX_REGIONS];
};

/* An empty table (no regions), or NULL when out of memory. */
struct guest_memory *guest_memory_new(void);
struct guest_memory *guest_memory_get(struct guest_memory *m);
void guest_memory_put(struct guest_memory *m);

/*
 * Maps one region from FD (mmap_offset as the frontend gave it) and returns
 * a new table holding M's regions plus it; M is unchanged.  Returns NULL
 * with *err (-EINVAL for a bad or overlapping region, -ENOSPC when full,
 * or mmap's errno).
 */
struct guest_memory *guest_memory_with_region(const struct guest_memory *m, uint64_t gpa,
                                              uint64_t size, uint64_t uva, uint64_t mmap_offset,
                                              int fd, int *err);

/* A new table without the region exactly matching GPA/SIZE/UVA, or NULL with
 * *err = -ENOENT (no such region) or -ENOMEM. */
struct guest_memory *guest_memory_without_region(const struct guest_memory *m, uint64_t gpa,
                                                 uint64_t size, uint64_t uva, int *err);

/* Our address for LEN bytes at frontend-virtual UVA, all in one region, or
 * NULL.  Used for the rings. */
void *guest_memory_uva(const struct guest_memory *m, uint64_t uva, uint64_t len);

/* Our address for LEN bytes at guest-physical GPA, all in one region, or
 * NULL.  Used for indirect descriptor tables. */
void *guest_memory_gpa(const struct guest_memory *m, uint64_t gpa, uint64_t len);

/*
 * Describes LEN bytes at guest-physical GPA as iovecs (a range may span
 * adjacent regions).  Appends at most MAX entries to IOV; returns how many,
 * or -1 when a byte lies outside every region or MAX is too small.
 */
int guest_memory_map(const struct guest_memory *m, uint64_t gpa, uint64_t len, struct iovec *iov,
                     int max);

#endif
