/*
 * lazy_open.c - see lazy_open.h.  One counter (atomic) and one bounded
 * table of carried handles under a mutex, taken only for requests with a
 * lazy handle, never across a system call.
 */
#include "mount/lazy_open.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/u64_table.h"
#include "transport/stream_hello.h"

/* The kernel's O_LARGEFILE, which it sets on every open of a 64-bit
 * program: glibc's is 0 on 64-bit targets.  0100000 on x86 and the
 * asm-generic architectures (arm64, riscv); elsewhere the flag is not
 * known here, and such opens go to the host. */
#if defined(__x86_64__) || defined(__i386__) || defined(__aarch64__) || defined(__riscv)
#define KERNEL_O_LARGEFILE 0100000
#else
#define KERNEL_O_LARGEFILE 0
#endif

#define PLAIN_FLAGS (KERNEL_O_LARGEFILE | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC)

/* Lazy handles carried by a forwarded request and not yet released: at
 * most half the slots.  A program holds few files open that it reads
 * past the page cache; more just cost their RELEASE a trip. */
#define CARRIED_SLOTS 8192

struct lazy_open {
    uint32_t open_flags;
    _Atomic uint64_t next; /* the counter of the handles given out */
    pthread_mutex_t lock;
    bool overflow;         /* the table was full once: forward every RELEASE */
    struct fsb_u64_table carried;
    struct fsb_u64_slot slots[CARRIED_SLOTS];
};

struct lazy_open *lazy_open_new(uint32_t open_flags)
{
    struct lazy_open *lo = malloc(sizeof(*lo));
    if (!lo)
        return NULL;
    lo->open_flags = open_flags;
    atomic_init(&lo->next, 0);
    pthread_mutex_init(&lo->lock, NULL);
    lo->overflow = false;
    fsb_u64_table_init(&lo->carried, lo->slots, CARRIED_SLOTS);
    return lo;
}

void lazy_open_free(struct lazy_open *lo)
{
    if (!lo)
        return;
    pthread_mutex_destroy(&lo->lock);
    free(lo);
}

static bool is_lazy(uint64_t fh)
{
    return (fh & FSB_LAZY_FH) != 0;
}

/* A read-only open the relay may answer (lazy_open.h, "plain"). */
static bool plain_read_only(const struct fuse_open_in *in)
{
    return (in->flags & O_ACCMODE) == O_RDONLY &&
           (in->flags & ~(uint32_t)(O_ACCMODE | PLAIN_FLAGS)) == 0 && in->open_flags == 0;
}

/*
 * Where request OPCODE keeps a file handle the host may open (or has
 * opened) for it, as an offset into its argument; -1 for none.  Every
 * request that names a file handle is here, those the host refuses for a
 * lazy one too (WRITE & co., EBADF there): one that is missing while the
 * host opens for it would let the relay answer the RELEASE of a handle
 * the host opened, and the host's open file would stay until the session
 * ends.  COPY_FILE_RANGE carries two: fh_out is a handle that writes,
 * which the host never opens for a lazy one; fh_in is at 0.  Not here:
 * the three the engine answers for a lazy handle without ever opening it
 * (fuse_ops.c): GETATTR (an fstat of one no request opened is the node's
 * attributes), FLUSH (its owner's record locks go by node) and SETATTR
 * (EBADF; the kernel sends none for a read-only fd: ftruncate is EINVAL
 * before).  A handle one of them uses that the host holds was opened by a
 * request that is here, which noted it; so an fstat of a lazy fd, or its
 * close with flush=host, keeps its RELEASE local.
 */
static long carried_offset(uint32_t opcode)
{
    switch (opcode) {
    case FUSE_READ:
        return offsetof(struct fuse_read_in, fh);
    case FUSE_WRITE:
        return offsetof(struct fuse_write_in, fh);
    case FUSE_FSYNC:
        return offsetof(struct fuse_fsync_in, fh);
    case FUSE_GETLK:
    case FUSE_SETLK:
    case FUSE_SETLKW:
        return offsetof(struct fuse_lk_in, fh);
    case FUSE_LSEEK:
        return offsetof(struct fuse_lseek_in, fh);
    case FUSE_COPY_FILE_RANGE:
        return offsetof(struct fuse_copy_file_range_in, fh_in);
    case FUSE_FALLOCATE:
        return offsetof(struct fuse_fallocate_in, fh);
    case FUSE_IOCTL:
        return offsetof(struct fuse_ioctl_in, fh);
    case FUSE_POLL:
        return offsetof(struct fuse_poll_in, fh);
    default:
        return -1;
    }
}

/* The lazy handle request IH carries, in *FH; false if none (or its
 * argument is too short to hold one: the host refuses it unread). */
static bool carried_fh(const struct fuse_in_header *ih, const void *arg, size_t len,
                       uint64_t *fh)
{
    long off = carried_offset(ih->opcode);
    if (off < 0 || len < (size_t)off + sizeof(*fh))
        return false;
    memcpy(fh, (const char *)arg + off, sizeof(*fh)); /* maybe unaligned */
    return is_lazy(*fh);
}

static enum lazy_answer answer_open(struct lazy_open *lo, const void *arg, size_t len,
                                    struct fuse_open_out *out)
{
    struct fuse_open_in in;
    if (len < sizeof(in))
        return LAZY_FORWARD;
    memcpy(&in, arg, sizeof(in));
    if (!plain_read_only(&in))
        return LAZY_FORWARD;
    uint64_t n = atomic_fetch_add_explicit(&lo->next, 1, memory_order_relaxed) + 1;
    *out = (struct fuse_open_out){ .fh = FSB_LAZY_FH | (n & ~FSB_LAZY_FH),
                                   .open_flags = lo->open_flags };
    return LAZY_OPENED;
}

/* A RELEASE of a lazy handle: answered here unless a forwarded request
 * carried it (or the table overflowed once). */
static enum lazy_answer answer_release(struct lazy_open *lo, const void *arg, size_t len)
{
    struct fuse_release_in in;
    if (len < sizeof(in))
        return LAZY_FORWARD;
    memcpy(&in, arg, sizeof(in));
    if (!is_lazy(in.fh))
        return LAZY_FORWARD;
    pthread_mutex_lock(&lo->lock);
    bool carried = fsb_u64_table_remove(&lo->carried, in.fh, NULL) || lo->overflow;
    pthread_mutex_unlock(&lo->lock);
    return carried ? LAZY_FORWARD : LAZY_RELEASED;
}

enum lazy_answer lazy_open_answers(struct lazy_open *lo, const struct fuse_in_header *ih,
                                   const void *arg, size_t len, struct fuse_open_out *out)
{
    if (!lo)
        return LAZY_FORWARD;
    if (ih->opcode == FUSE_OPEN)
        return answer_open(lo, arg, len, out);
    if (ih->opcode == FUSE_RELEASE)
        return answer_release(lo, arg, len);
    return LAZY_FORWARD;
}

void lazy_open_forwarding(struct lazy_open *lo, const struct fuse_in_header *ih,
                          const void *arg, size_t len)
{
    uint64_t fh;
    if (!lo || !carried_fh(ih, arg, len, &fh))
        return;
    pthread_mutex_lock(&lo->lock);
    if (!lo->overflow && fsb_u64_table_add(&lo->carried, fh, NULL) == -ENOSPC) {
        lo->overflow = true;
        log_warn("the relay's table of used lazy handles is full: every release of one goes "
                 "to the host from now on");
    }
    pthread_mutex_unlock(&lo->lock);
}
