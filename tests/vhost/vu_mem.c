/*
 * vu_mem.c - see vu_mem.h.
 */
#include "vu_mem.h"
#include "vu_proto.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* The guard pattern depends on the position, so that bytes copied from
 * one guard to another (or a shifted copy) still show. */
static uint8_t guard_byte(uint64_t offset)
{
    return (uint8_t)(0xa5 ^ (offset * 131) ^ (offset >> 9));
}

static uint64_t guard_offset(const struct vu_mem *m, unsigned i)
{
    /* Guard i precedes region i; guard nregions ends the file. */
    return i < m->nregions ? m->r[i].offset - VU_MEM_GUARD : m->file_size - VU_MEM_GUARD;
}

static void fill_guards(struct vu_mem *m)
{
    for (unsigned i = 0; i <= m->nregions; i++) {
        uint64_t start = guard_offset(m, i);
        for (uint64_t o = start; o < start + VU_MEM_GUARD; o++)
            m->base[o] = guard_byte(o);
    }
}

static void lay_out(struct vu_mem *m, const uint64_t sizes[VU_MEM_REGIONS])
{
    uint64_t offset = VU_MEM_GUARD;
    for (unsigned i = 0; i < VU_MEM_REGIONS; i++) {
        struct vu_region *r = &m->r[i];
        r->size = sizes[i];
        r->offset = offset;
        r->uva = VU_UVA_BASE + offset;
        offset += sizes[i] + VU_MEM_GUARD;
    }
    m->r[0].gpa = VU_GPA_BASE;
    m->r[1].gpa = VU_GPA_BASE + sizes[0];
    m->r[2].gpa = VU_GPA_HIGH;
    m->nregions = VU_MEM_REGIONS;
    m->file_size = offset;
}

int vu_mem_create(struct vu_mem *m, const uint64_t sizes[VU_MEM_REGIONS])
{
    memset(m, 0, sizeof(*m));
    lay_out(m, sizes);
    m->fd = memfd_create("vu-guest-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (m->fd < 0)
        return -errno;
    /* Sealed against resizing, as QEMU's memory-backend-memfd (seal=on). */
    if (ftruncate(m->fd, (off_t)m->file_size) < 0 ||
        fcntl(m->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
        int err = -errno;
        close(m->fd);
        return err;
    }
    m->base = mmap(NULL, m->file_size, PROT_READ | PROT_WRITE, MAP_SHARED, m->fd, 0);
    if (m->base == MAP_FAILED) {
        int err = -errno;
        close(m->fd);
        return err;
    }
    for (unsigned i = 0; i < m->nregions; i++)
        m->r[i].ptr = m->base + m->r[i].offset;
    fill_guards(m);
    return 0;
}

void vu_mem_destroy(struct vu_mem *m)
{
    if (m->base && m->base != MAP_FAILED)
        munmap(m->base, m->file_size);
    if (m->fd >= 0)
        close(m->fd);
    m->base = NULL;
    m->fd = -1;
}

static const struct vu_region *region_of(const struct vu_mem *m, uint64_t gpa)
{
    for (unsigned i = 0; i < m->nregions; i++)
        if (gpa >= m->r[i].gpa && gpa - m->r[i].gpa < m->r[i].size)
            return &m->r[i];
    return NULL;
}

void *vu_mem_ptr(const struct vu_mem *m, uint64_t gpa, uint64_t len)
{
    const struct vu_region *r = region_of(m, gpa);
    if (!r || len > r->size - (gpa - r->gpa))
        return NULL;
    return r->ptr + (gpa - r->gpa);
}

uint64_t vu_mem_uva(const struct vu_mem *m, uint64_t gpa)
{
    const struct vu_region *r = region_of(m, gpa);
    return r ? r->uva + (gpa - r->gpa) : 0;
}

/* Walks LEN bytes at GPA region by region, copying in direction TO_GUEST. */
static bool copy(const struct vu_mem *m, uint64_t gpa, uint8_t *buf, size_t len, bool to_guest)
{
    while (len > 0) {
        const struct vu_region *r = region_of(m, gpa);
        if (!r)
            return false;
        uint64_t in_region = r->size - (gpa - r->gpa);
        size_t n = len < in_region ? len : (size_t)in_region;
        uint8_t *p = r->ptr + (gpa - r->gpa);
        if (to_guest)
            memcpy(p, buf, n);
        else
            memcpy(buf, p, n);
        gpa += n;
        buf += n;
        len -= n;
    }
    return true;
}

bool vu_mem_write(const struct vu_mem *m, uint64_t gpa, const void *src, size_t len)
{
    return copy(m, gpa, (uint8_t *)src, len, true);
}

bool vu_mem_read(const struct vu_mem *m, uint64_t gpa, void *dst, size_t len)
{
    return copy(m, gpa, dst, len, false);
}

uint64_t vu_mem_alloc(struct vu_mem *m, unsigned ri, uint64_t len, uint64_t align, void **ptr)
{
    struct vu_region *r = &m->r[ri];
    /* The end of region 0 and the start of region 1 are kept for buffers
     * that span the two (vu_mem_straddling). */
    uint64_t limit = r->size - (ri == 0 ? VU_MEM_STRADDLE_RESERVE : 0);
    uint64_t used = ri == 1 && r->used < VU_MEM_STRADDLE_RESERVE ? VU_MEM_STRADDLE_RESERVE : r->used;
    uint64_t start = (used + align - 1) & ~(align - 1);
    if (start > limit || len > limit - start)
        return 0;
    r->used = start + len;
    if (ptr)
        *ptr = r->ptr + start;
    return r->gpa + start;
}

uint64_t vu_mem_straddling(const struct vu_mem *m, uint64_t len)
{
    return m->r[1].gpa - len / 2;
}

uint64_t vu_mem_hole(const struct vu_mem *m)
{
    return m->r[1].gpa + m->r[1].size;
}

void vu_mem_describe(const struct vu_mem *m, unsigned ri, struct vu_region_desc *out)
{
    out->guest_phys_addr = m->r[ri].gpa;
    out->memory_size = m->r[ri].size;
    out->userspace_addr = m->r[ri].uva;
    out->mmap_offset = m->r[ri].offset;
}

bool vu_mem_guards_intact(const struct vu_mem *m, char *msg, size_t msg_len)
{
    for (unsigned i = 0; i <= m->nregions; i++) {
        uint64_t start = guard_offset(m, i);
        for (uint64_t o = start; o < start + VU_MEM_GUARD; o++) {
            if (m->base[o] != guard_byte(o)) {
                snprintf(msg, msg_len,
                         "guard %u changed at memfd offset %#llx (%llu bytes into it)", i,
                         (unsigned long long)o, (unsigned long long)(o - start));
                return false;
            }
        }
    }
    return true;
}
