/*
 * passthrough_dirs.c - open directories of the passthrough backend.
 *
 * READDIR offsets are the host's own getdents64 d_off cookies, so a listing
 * resumes exactly where the previous reply stopped.  Entries removed
 * meanwhile neither repeat nor hide others only as far as the host
 * filesystem keeps that promise: POSIX makes it for one open directory
 * stream, and here READDIRs of one guest open share one host fd.  Without
 * OPENDIR (fuse_ops.c) each READDIR opens the directory anew and seeks to
 * the cookie, which is only safe where cookies stay valid across opens
 * (passthrough_dir_offsets_stable).
 */
#include "backend/passthrough/pt_internal.h"

#include <dirent.h>
#include <errno.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

struct linux_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

#define DIRENT_BUF 32768

int pt_opendir(struct fsb_backend *be, const struct fsb_ctx *ctx, uint64_t nodeid, uint64_t *fh)
{
    struct passthrough *pt = pt_of(be);
    struct pt_inode *in;
    int fd = pt_pin(pt, nodeid, &in);
    if (fd < 0)
        return fd;
    int dfd = -ENOTDIR;
    struct stat st = { .st_dev = in->dev, .st_ino = in->ino };
    if (S_ISDIR(in->type))
        dfd = pt_handle_grant(pt);
    if (!dfd) {
        PT_AS_CALLER(pt, ctx, dfd, dfd = pt_reopen(fd, O_RDONLY | O_DIRECTORY), fd);
        if (dfd < 0)
            pt_handle_ungrant(pt);
    }
    pt_unpin(pt, in);
    if (dfd < 0)
        return dfd;
    int64_t h = pt_handle_add(pt, dfd, true, &st);
    if (h < 0) {
        close(dfd);
        return (int)h;
    }
    *fh = (uint64_t)h;
    return 0;
}

static bool is_dot_or_dotdot(const char *name)
{
    return name[0] == '.' && (name[1] == 0 || (name[1] == '.' && name[2] == 0));
}

/* The d_ino of ".." in the directory DFD: at the export root ".." is the
 * root itself (lookup says so too), so it is the root's own number, not
 * that of the host directory above the export. */
static uint64_t dotdot_ino(struct passthrough *pt, int dfd, uint64_t host_ino)
{
    struct stat st = { 0 };
    struct pt_inode *root = inode_get(&pt->inodes, FSB_ROOT_NODEID);
    bool at_root = root && fstat(dfd, &st) == 0 && st.st_dev == root->dev &&
                   st.st_ino == root->ino;
    if (root)
        inode_put(&pt->inodes, root);
    return at_root ? (uint64_t)st.st_ino : host_ino;
}

/* Offers one host entry to the filler; with PLUS, looked up first.  Returns
 * false when the reply is full. */
static bool emit_entry(struct passthrough *pt, int dfd, const struct linux_dirent64 *d,
                       bool plus, fsb_dir_filler fill, void *cookie)
{
    struct fsb_entry entry;
    struct fsb_dirent out = { .name = d->d_name, .ino = d->d_ino, .type = d->d_type,
                              .next_offset = (uint64_t)d->d_off };
    if (strcmp(d->d_name, "..") == 0)
        out.ino = dotdot_ino(pt, dfd, d->d_ino);
    /* A name that vanished since getdents is sent without attributes: the
     * guest then looks it up itself (and finds it gone). */
    if (plus && !is_dot_or_dotdot(d->d_name) && pt_lookup_at(pt, dfd, d->d_name, &entry) == 0)
        out.entry = &entry;
    if (fill(cookie, &out))
        return true;
    if (out.entry) /* the guest never saw it: undo the lookup */
        pt->base.ops->forget(&pt->base, entry.nodeid, 1);
    return false;
}

int pt_readdir(struct fsb_backend *be, uint64_t nodeid, uint64_t fh, uint64_t offset, bool plus,
               fsb_dir_filler fill, void *cookie)
{
    (void)nodeid;
    struct passthrough *pt = pt_of(be);
    int dfd = pt_handle_get(pt, fh, true);
    if (dfd < 0)
        return dfd;
    static __thread _Alignas(struct linux_dirent64) char buf[DIRENT_BUF];
    int err = 0;
    if (lseek(dfd, (off_t)offset, SEEK_SET) < 0) {
        err = -errno;
        goto out;
    }
    for (;;) {
        long n = syscall(SYS_getdents64, dfd, buf, sizeof(buf));
        if (n <= 0) {
            err = n < 0 ? -errno : 0;
            break;
        }
        for (long pos = 0; pos < n;) {
            const struct linux_dirent64 *d = (const void *)(buf + pos);
            if (!emit_entry(pt, dfd, d, plus, fill, cookie))
                goto out;
            pos += d->d_reclen;
        }
    }
out:
    pt_handle_put(pt, fh);
    return err;
}

static bool only_dots(const char *buf, long n)
{
    for (long pos = 0; pos < n;) {
        const struct linux_dirent64 *d = (const void *)(buf + pos);
        if (!is_dot_or_dotdot(d->d_name))
            return false;
        pos += d->d_reclen;
    }
    return true;
}

/*
 * Whether directory DFD tells names apart by their bytes, as the guest's
 * relay does with the names it saw made there (mount/missing_names.h):
 * in a casefolded one (ext4, f2fs, tmpfs: chattr +F, which a new
 * directory inherits) "makefile" finds "Makefile", and so it does
 * everywhere on vfat, ntfs3 or hfsplus, so only the filesystems known to
 * keep bytes apart, casefolding aside, qualify.  xfs is not among them:
 * one made with mkfs -n version=ci folds ASCII case, which takes another
 * ioctl to see.  FS_IOC_GETFLAGS fails with ENOTTY where there are no
 * flags (tmpfs before 6.0), hence no casefolding either.
 */
static bool names_byte_exact(int dfd)
{
    struct statfs fs;
    if (fstatfs(dfd, &fs) != 0)
        return false;
    switch (fs.f_type) {
    case EXT4_SUPER_MAGIC: /* ext2 and ext3 too */
    case BTRFS_SUPER_MAGIC:
    case TMPFS_MAGIC:
    case F2FS_SUPER_MAGIC:
        break;
    default:
        return false;
    }
    int flags = 0;
    if (ioctl(dfd, FS_IOC_GETFLAGS, &flags) != 0)
        return errno == ENOTTY;
    return !(flags & FS_CASEFOLD_FL);
}

bool pt_dir_is_empty(int fd)
{
    int dfd = pt_reopen(fd, O_RDONLY | O_DIRECTORY);
    if (dfd < 0)
        return false;
    _Alignas(struct linux_dirent64) char buf[1024];
    bool empty = names_byte_exact(dfd);
    long n = 0;
    while (empty && (n = syscall(SYS_getdents64, dfd, buf, sizeof(buf))) > 0)
        empty = only_dots(buf, n);
    close(dfd);
    return empty && n == 0;
}

int pt_releasedir(struct fsb_backend *be, uint64_t fh)
{
    return pt_handle_close(pt_of(be), fh, true);
}

int pt_fsyncdir(struct fsb_backend *be, uint64_t fh, bool datasync)
{
    return pt_handle_fsync(pt_of(be), fh, true, datasync);
}

