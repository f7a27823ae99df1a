/*
 * vu_mem.h - the test frontend's "guest RAM": one memfd shared with the
 * backend, cut into regions with guard bytes around each.
 *
 * File layout (guards are GUARD bytes of a known pattern):
 *
 *   [guard][region 0][guard][region 1][guard][region 2][guard]
 *
 * Guest-physical addresses: region 1 follows region 0 directly (a buffer
 * may legally span the two), region 2 lies above a hole.  The frontend
 * virtual addresses (what SET_VRING_ADDR and the memory table's
 * userspace_addr carry) are a third, unrelated numbering: a backend that
 * mixes them up, or that assumes two regions adjacent in guest-physical
 * space are adjacent in the file, reads or writes the wrong bytes, and the
 * guards between the regions show it.
 */
#ifndef VU_MEM_H
#define VU_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VU_MEM_REGIONS 3
#define VU_MEM_GUARD (64u * 1024)

/* Guest-physical bases: region 1 right after region 0, region 2 above a
 * hole; frontend-virtual addresses are VU_UVA_BASE + the file offset. */
#define VU_GPA_BASE 0x100000ull
#define VU_GPA_HIGH 0x100000000ull
#define VU_UVA_BASE 0x600000000000ull

struct vu_region {
    uint64_t gpa;
    uint64_t size;
    uint64_t uva;
    uint64_t offset;    /* in the memfd */
    uint8_t *ptr;       /* our mapping of gpa */
    uint64_t used;      /* bump allocator */
};

struct vu_mem {
    int fd;
    uint8_t *base;      /* the whole memfd, mapped shared */
    size_t file_size;
    unsigned nregions;
    struct vu_region r[VU_MEM_REGIONS];
};

/* Creates the memfd with regions of SIZES bytes (multiples of 64 KiB) and
 * fills the guards.  Returns 0 or -errno. */
int vu_mem_create(struct vu_mem *m, const uint64_t sizes[VU_MEM_REGIONS]);
void vu_mem_destroy(struct vu_mem *m);

/* Our pointer to LEN bytes at GPA when they lie in one region, else NULL. */
void *vu_mem_ptr(const struct vu_mem *m, uint64_t gpa, uint64_t len);
/* The frontend-virtual address of GPA (which must be in a region), or 0. */
uint64_t vu_mem_uva(const struct vu_mem *m, uint64_t gpa);
/* Copy to / from guest memory; a range may span adjacent regions.
 * Returns false when a byte lies outside every region. */
bool vu_mem_write(const struct vu_mem *m, uint64_t gpa, const void *src, size_t len);
bool vu_mem_read(const struct vu_mem *m, uint64_t gpa, void *dst, size_t len);

/* Allocates LEN bytes aligned to ALIGN in region R; returns the gpa and
 * sets *PTR, or returns 0 when the region is full. */
uint64_t vu_mem_alloc(struct vu_mem *m, unsigned r, uint64_t len, uint64_t align, void **ptr);
/* A buffer of LEN bytes whose first half is the end of region 0 and whose
 * second half is the start of region 1 (reserved for this use). */
uint64_t vu_mem_straddling(const struct vu_mem *m, uint64_t len);
/* Bytes at the end of region 0 and at the start of region 1 kept for
 * vu_mem_straddling. */
#define VU_MEM_STRADDLE_RESERVE (256u * 1024)

/* The first address of the hole above region 1 and the end of region 2. */
uint64_t vu_mem_hole(const struct vu_mem *m);

/* Describes region R as the memory table carries it. */
struct vu_region_desc;
void vu_mem_describe(const struct vu_mem *m, unsigned r, struct vu_region_desc *out);

/* True when every guard still holds its pattern; otherwise names the
 * first changed byte in MSG. */
bool vu_mem_guards_intact(const struct vu_mem *m, char *msg, size_t msg_len);

#endif
