/*
 * fuzz_virtqueue.c - fuzz target for the split-virtqueue walker: the guest
 * writes the descriptor table, the avail ring and indirect tables; every
 * iovec vq_pop hands out must lie inside the guest's regions.
 *
 * Guest memory here: two adjacent regions (a descriptor may span them) and
 * a third one far away, with frontend-virtual addresses unlike the
 * guest-physical ones.  The input is [num exponent, flags (bit 0
 * event_idx, bit 1 no indirect), last_avail (2 bytes)] and then the bytes
 * of guest memory from address 0.
 */
#include "transport/vhost/virtqueue.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REGION_SIZE 0x8000ull
#define DESC_GPA 0x0ull
#define AVAIL_GPA 0x2000ull
#define USED_GPA 0x3000ull
#define FAR_GPA 0x100000ull
#define UVA_BASE 0x7f0000000000ull

static struct guest_memory *mem;

static struct guest_memory *add(struct guest_memory *m, uint64_t gpa)
{
    int fd = memfd_create("fuzz-guest", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, (off_t)REGION_SIZE) < 0)
        abort();
    int err;
    struct guest_memory *n =
        guest_memory_with_region(m, gpa, REGION_SIZE, UVA_BASE + gpa, 0, fd, &err);
    close(fd);
    if (!n)
        abort();
    guest_memory_put(m);
    return n;
}

static void setup(void)
{
    mem = add(add(add(guest_memory_new(), 0), REGION_SIZE), FAR_GPA);
}

/* The oracle: every byte handed out belongs to a region. */
static void check_inside(const struct iovec *iov, int n)
{
    for (int i = 0; i < n; i++) {
        const uint8_t *p = iov[i].iov_base;
        bool ok = false;
        for (unsigned r = 0; r < mem->nregions && !ok; r++) {
            const uint8_t *lo = mem->regions[r].hva;
            ok = p >= lo && iov[i].iov_len <= mem->regions[r].size &&
                 (size_t)(p - lo) <= mem->regions[r].size - iov[i].iov_len;
        }
        if (!ok)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!mem)
        setup();
    if (size < 4)
        return 0;
    for (unsigned r = 0; r < mem->nregions; r++)
        memset(mem->regions[r].hva, 0, REGION_SIZE);
    size_t guest_bytes = size - 4 < 2 * REGION_SIZE ? size - 4 : 2 * REGION_SIZE;
    memcpy(mem->regions[0].hva, data + 4, guest_bytes < REGION_SIZE ? guest_bytes : REGION_SIZE);
    if (guest_bytes > REGION_SIZE)
        memcpy(mem->regions[1].hva, data + 4 + REGION_SIZE, guest_bytes - REGION_SIZE);

    static struct virtqueue vq;
    static struct vq_element e;
    vq_init(&vq, 1);
    vq.num = (uint16_t)(1u << (data[0] % 9)); /* 1..256: the rings fit below USED_GPA + 0x1000 */
    vq.desc_uva = UVA_BASE + DESC_GPA;
    vq.avail_uva = UVA_BASE + AVAIL_GPA;
    vq.used_uva = UVA_BASE + USED_GPA;
    if (!vq_map_rings(&vq, mem))
        abort();
    vq.event_idx = data[1] & 1;
    vq.indirect = !(data[1] & 2); /* the seeds have 0 or 1: indirect on */
    memcpy(&vq.last_avail, data + 2, 2);
    vq.used_idx = vq.last_avail;
    for (int i = 0; i < 64; i++) {
        int r = vq_pop(&vq, &e);
        if (r <= 0)
            break;
        check_inside(e.iov, e.nreadable + e.nwritable);
        vq_push(&vq, &e, 0);
    }
    vq_enable_notification(&vq);
    vq_destroy(&vq);
    return 0;
}
