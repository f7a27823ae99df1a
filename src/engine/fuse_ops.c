/*
 * fuse_ops.c - one handler per FUSE opcode, and the table that maps
 * opcodes to them.
 *
 * Each handler reads its fixed argument struct and names through the
 * strict readers of fuse_request.h, checks the values that the backend
 * cannot (sizes against the negotiated maximum, flag sets), calls the
 * backend, and writes the reply struct.  The cache mode of the export
 * decides timeouts and open flags here, in one place (entry_timeout(),
 * open_reply_flags()).
 */
#include "engine/created_handles.h"
#include "engine/fuse_request.h"
#include "engine/lazy_handles.h"
#include "engine/xattr_map.h"
#include "common/log.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h> /* RENAME_NOREPLACE, RENAME_EXCHANGE */
#include <sys/file.h>
#include <unistd.h>

/* Newer than Debian 12's <linux/fuse.h> (7.38); values from upstream. */
#ifndef FUSE_DIRECT_IO_ALLOW_MMAP
#define FUSE_DIRECT_IO_ALLOW_MMAP (1ULL << 36) /* 7.39 */
#endif

#define XATTR_VALUE_MAX 65536
#define XATTR_NAME_MAX_LEN 255
#define MAX_DATA_SLICES 256
#define COPY_RANGE_MAX (1u << 30)

/* ---- attributes and entries ---------------------------------------- */

/* The cache mode a session is served with: cache=coherent is honoured only
 * while its notifications flow (notify_out.h), else it is cache=auto. */
static enum fsb_cache_mode session_cache(const struct fsb_session *s)
{
    enum fsb_cache_mode c = s->export->cache;
    return c == FSB_CACHE_COHERENT && !s->coherent ? FSB_CACHE_AUTO : c;
}

/* Seconds the guest may cache attributes and names. */
static uint64_t entry_timeout(const struct fsb_session *s)
{
    switch (session_cache(s)) {
    case FSB_CACHE_NEVER:
        return 0;
    case FSB_CACHE_AUTO:
        return 1;
    case FSB_CACHE_METADATA:
    case FSB_CACHE_ALWAYS:
    case FSB_CACHE_COHERENT: /* every change is pushed */
        break;
    }
    return 86400; /* as virtiofsd: for exports that only the guest changes */
}

static void fill_attr(struct fuse_attr *a, const struct stat *st)
{
    *a = (struct fuse_attr){
        .ino = st->st_ino,
        .size = (uint64_t)st->st_size,
        .blocks = (uint64_t)st->st_blocks,
        .atime = (uint64_t)st->st_atim.tv_sec,
        .mtime = (uint64_t)st->st_mtim.tv_sec,
        .ctime = (uint64_t)st->st_ctim.tv_sec,
        .atimensec = (uint32_t)st->st_atim.tv_nsec,
        .mtimensec = (uint32_t)st->st_mtim.tv_nsec,
        .ctimensec = (uint32_t)st->st_ctim.tv_nsec,
        .mode = st->st_mode,
        .nlink = (uint32_t)st->st_nlink,
        .uid = st->st_uid,
        .gid = st->st_gid,
        .rdev = (uint32_t)st->st_rdev,
        .blksize = (uint32_t)st->st_blksize,
    };
}

/*
 * Seconds the guest may cache what this reply says.  A host change while
 * the request was served may have been pushed before the guest had the
 * node: the kernel drops an INVAL_INODE of an inode it has not made yet,
 * and the reply would then install the old attributes for a day (the
 * kernel's attr_version only protects inodes it already has).  So in
 * cache=coherent, when a change of an inode the session knows came in
 * meanwhile (session.h host_changes, counted before its invalidation is
 * queued; change_watch.c, known_change, says why the other changes need
 * not count), the reply is not cached: the guest asks again at its next
 * use.
 */
static uint64_t reply_timeout(const struct fsb_request *r)
{
    const struct fsb_session *s = r->s;
    if (s->coherent &&
        atomic_load_explicit(&s->host_changes, memory_order_acquire) != r->host_changes)
        return 0;
    return entry_timeout(s);
}

static void fill_entry_out(const struct fsb_request *r, struct fuse_entry_out *eo,
                           const struct fsb_entry *e)
{
    uint64_t t = reply_timeout(r);
    *eo = (struct fuse_entry_out){
        .nodeid = e->nodeid,
        .generation = e->generation,
        .entry_valid = t,
        .attr_valid = t,
    };
    fill_attr(&eo->attr, &e->attr);
}

static int reply_entry(struct fsb_request *r, const struct fsb_entry *e)
{
    struct fuse_entry_out eo;
    fill_entry_out(r, &eo, e);
    return reply_put(r, &eo, sizeof(eo));
}

static int reply_attr(struct fsb_request *r, const struct stat *st)
{
    struct fuse_attr_out ao = { .attr_valid = reply_timeout(r) };
    fill_attr(&ao.attr, st);
    return reply_put(r, &ao, sizeof(ao));
}

/*
 * Attribute notes (stream_hello.h, FSB_NOTIFY_ATTRS): the guest kernel
 * forgets a directory's attributes whenever its entries change and asks
 * for them at its next path walk through it; the note carries what that
 * GETATTR would be answered now, with the same timeout, so that the
 * guest's relay answers it itself.  None when nothing may be cached (a
 * timeout of 0: cache=never, or a host change came in meanwhile).
 */
void fsb_note_changed_dirs(struct fsb_request *r)
{
    uint64_t t = reply_timeout(r);
    /* the request's directory, and a rename's other one */
    uint64_t dirs[FSB_MAX_ATTR_NOTES] = { r->in.nodeid, r->new_dir };
    for (unsigned i = 0; t && i < FSB_MAX_ATTR_NOTES; i++) {
        struct stat st;
        if (!dirs[i] || (i == 1 && dirs[1] == dirs[0]) ||
            r->be->ops->getattr(r->be, dirs[i], FSB_NO_FH, &st) != 0)
            continue;
        struct fsb_attr_note *n = &r->lend->notes[r->lend->nnotes++];
        *n = (struct fsb_attr_note){ .nodeid = dirs[i], .unique = r->in.unique,
                                     .attr = { .attr_valid = t } };
        fill_attr(&n->attr.attr, &st);
    }
}

/* FOPEN_* flags for an open file or directory, from the cache mode. */
static uint32_t open_reply_flags(const struct fsb_session *s, bool dir)
{
    switch (session_cache(s)) {
    case FSB_CACHE_NEVER:
    case FSB_CACHE_METADATA:
        return dir ? 0 : FOPEN_DIRECT_IO;
    case FSB_CACHE_AUTO:
        return 0;
    case FSB_CACHE_ALWAYS:
    case FSB_CACHE_COHERENT:
        return dir ? FOPEN_CACHE_DIR | FOPEN_KEEP_CACHE : FOPEN_KEEP_CACHE;
    }
    return 0;
}

uint32_t fsb_engine_file_open_flags(const struct fsb_session *s)
{
    return open_reply_flags(s, false);
}

/*
 * Directories without OPENDIR (cache=coherent).  There the guest keeps
 * listings for good, so OPENDIR's reply would only ever say
 * FOPEN_CACHE_DIR | FOPEN_KEEP_CACHE, and that is what the kernel assumes
 * by itself once OPENDIR is ENOSYS (fs/fuse/file.c, fuse_file_open:
 * "Default for no-open"; it then sets no_opendir for the connection and
 * sends neither OPENDIR nor RELEASEDIR again).  A warm directory's opendir,
 * getdents and close (find, du, ls) then cost no round trip.  READDIR and
 * FSYNCDIR come with fh 0 from then on: each opens the directory for
 * itself, as the caller, and closes it before replying; the handle counts
 * on the session's budget of open files meanwhile.
 *
 * Only where the kernel offers FUSE_NO_OPENDIR_SUPPORT (older ones fail
 * opendir(3) with the ENOSYS), which fsbridge-mount withholds on a mount
 * without default_permissions: a cached listing is shown to whoever opens
 * the directory, so the guest kernel must be the one that checks who may
 * (init_filter.h).  Not in cache=always, which virtio-fs guests use too:
 * no relay stands between their kernel and the host to withhold the offer
 * from a mount that checks no permission.  Only where the export's host
 * filesystem keeps directory offsets valid across opens
 * (passthrough_dir_offsets_stable): elsewhere a listing resumed by a fresh open
 * skips entries while a guest removes them (rm -r of a big directory).  Files keep
 * OPEN, FLUSH and RELEASE: the kernel's no_open is for the whole
 * connection, writes and locks included, and record locks here belong to
 * the open handle (passthrough_files.c); docs/architecture.md.
 */
static bool dirs_may_go_unopened(const struct fsb_session *s)
{
    return session_cache(s) == FSB_CACHE_COHERENT && !s->export->overlay[0] &&
           s->export->dir_offsets_stable;
}

static bool dirs_without_open(const struct fsb_session *s)
{
    return (s->flags & FUSE_NO_OPENDIR_SUPPORT) != 0;
}

/* ---- INIT ------------------------------------------------------------ */

/* What we ask of the kernel, before masking with what it offers. */
static uint64_t wanted_init_flags(const struct fsb_session *s)
{
    uint64_t f = FUSE_ASYNC_READ | FUSE_POSIX_LOCKS | FUSE_ATOMIC_O_TRUNC | FUSE_BIG_WRITES |
                 FUSE_FLOCK_LOCKS | FUSE_DO_READDIRPLUS | FUSE_READDIRPLUS_AUTO |
                 FUSE_ASYNC_DIO | FUSE_PARALLEL_DIROPS | FUSE_MAX_PAGES | FUSE_INIT_EXT |
                 FUSE_HANDLE_KILLPRIV_V2 | FUSE_EXPORT_SUPPORT | FUSE_DONT_MASK |
                 FUSE_CREATE_SUPP_GROUP;
    enum fsb_cache_mode c = session_cache(s);
    /* coherent too: attributes refreshed by a lookup after a dropped cache
     * (notify_out.h) then drop stale pages as well */
    if (c == FSB_CACHE_AUTO || c == FSB_CACHE_COHERENT)
        f |= FUSE_AUTO_INVAL_DATA;
    if (c == FSB_CACHE_AUTO || c == FSB_CACHE_ALWAYS || c == FSB_CACHE_COHERENT)
        f |= FUSE_CACHE_SYMLINKS;
    if (c == FSB_CACHE_NEVER || c == FSB_CACHE_METADATA)
        f |= FUSE_DIRECT_IO_ALLOW_MMAP; /* shared mmap despite direct-io */
    if (s->export->writeback && !s->export->readonly)
        f |= FUSE_WRITEBACK_CACHE;
    if (dirs_may_go_unopened(s))
        f |= FUSE_NO_OPENDIR_SUPPORT;
    return f;
}

/* max_write: the largest payload that fits a frame, in whole pages. */
static uint32_t frame_max_write(size_t max_frame)
{
    size_t room = max_frame - sizeof(struct fuse_in_header) - sizeof(struct fuse_write_in);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    room -= room % page;
    return room > FSB_MAX_WRITE ? FSB_MAX_WRITE : (uint32_t)room;
}

/* Whether the kernel of session S will send no OPEN and no RELEASE
 * (created_handles.h): a client of version 7 that accepts fh 0 relays an
 * offer of FUSE_NO_OPEN_SUPPORT only when its relay answers OPEN with
 * ENOSYS, which it does only without a writeback cache (the mount's
 * init_filter.c, grant_no_open). */
static bool runs_without_opens(const struct fsb_session *s, uint64_t offered)
{
    return s->no_open && s->created_ids && (offered & FUSE_NO_OPEN_SUPPORT) &&
           !(s->flags & FUSE_WRITEBACK_CACHE);
}

static int op_init(struct fsb_request *r)
{
    struct fsb_session *s = r->s;
    struct fuse_init_in in = { 0 };
    /* Kernels before 7.36 send 16 bytes (no flags2); read what is there. */
    size_t len = r->args.left < sizeof(in) ? r->args.left : sizeof(in);
    if (s->initialized)
        return -EPROTO;
    if (len < 16 || !req_arg(r, &in, len))
        return -EINVAL;
    struct fuse_init_out out = { .major = FUSE_KERNEL_VERSION,
                                 .minor = FUSE_KERNEL_MINOR_VERSION };
    if (in.major > FUSE_KERNEL_VERSION)
        return reply_put(r, &out, FUSE_COMPAT_INIT_OUT_SIZE); /* kernel retries with 7 */
    if (in.major < FUSE_KERNEL_VERSION || in.minor < FSB_FUSE_MIN_MINOR) {
        log_error("guest speaks FUSE %u.%u; the oldest supported is 7.%u", in.major, in.minor,
                  FSB_FUSE_MIN_MINOR);
        return -EPROTO;
    }
    uint64_t offered = in.flags;
    if (in.flags & FUSE_INIT_EXT)
        offered |= (uint64_t)in.flags2 << 32;
    s->flags = offered & wanted_init_flags(s);
    if (runs_without_opens(s, offered) && !(s->created = fsb_created_new(s->backend)))
        return -ENOMEM;
    s->minor = in.minor < FUSE_KERNEL_MINOR_VERSION ? in.minor : FUSE_KERNEL_MINOR_VERSION;
    s->kernel_minor = in.minor;
    s->max_write = frame_max_write(s->max_frame);

    out.minor = s->minor;
    out.max_readahead = in.max_readahead;
    out.flags = (uint32_t)s->flags;
    out.flags2 = (uint32_t)(s->flags >> 32);
    out.max_background = 64;
    out.congestion_threshold = 48;
    out.max_write = s->max_write;
    out.time_gran = 1;
    out.max_pages = (uint16_t)(s->max_write / (uint32_t)sysconf(_SC_PAGESIZE));
    s->initialized = true;
    return reply_put(r, &out, s->minor < 23 ? FUSE_COMPAT_22_INIT_OUT_SIZE : sizeof(out));
}

static int op_destroy(struct fsb_request *r)
{
    (void)r;
    return 0; /* the transport ends the session when the stream closes */
}

/* ---- names and inodes ------------------------------------------------ */

/* With FUSE_DONT_MASK the guest kernel sends a creation's mode unmasked
 * and the caller's umask beside it: the host kernel applies it (as the
 * caller's, see fsb_ctx.umask) only when the parent has no default ACL,
 * so new files get a default ACL's group::rwx as on ext4. */
static void take_umask(struct fsb_request *r, uint32_t umask)
{
    if (r->s->flags & FUSE_DONT_MASK)
        r->ctx.umask = umask & 0777;
}

/*
 * A name that does not exist is cached by the guest as long as one that
 * does (a node id of 0 with the entry timeout): programs probe far more
 * missing names than they find (node's module resolution, compilers'
 * include paths, git's per-directory ignore files), and without this each
 * probe is a LOOKUP every time.  The guest's own creates replace the
 * negative entry at once; a name created by the host or another guest
 * appears within the timeout, as a name removed by them disappears.
 * "." and ".." are never negative: the kernel asks for them only to
 * reconnect file handles, where ENOENT has its own meaning.
 */
static bool is_dot_or_dotdot(const char *name)
{
    return strcmp(name, ".") == 0 || strcmp(name, "..") == 0;
}

static int reply_negative_entry(struct fsb_request *r)
{
    struct fuse_entry_out eo = { .nodeid = 0, .entry_valid = reply_timeout(r) };
    return reply_put(r, &eo, sizeof(eo));
}

static int op_lookup(struct fsb_request *r)
{
    char name[NAME_MAX + 1];
    struct fsb_entry e;
    int err = req_name(r, name, true);
    if (err || !req_args_done(r))
        return err ? err : -EINVAL;
    err = r->be->ops->lookup(r->be, &r->ctx, r->in.nodeid, name, &e);
    if (r->s->test_lookup_delay_ms)
        usleep(r->s->test_lookup_delay_ms * 1000u);
    if (err == -ENOENT && reply_timeout(r) > 0 && !is_dot_or_dotdot(name))
        return reply_negative_entry(r);
    return err ? err : reply_entry(r, &e);
}

/* A node the guest holds no lookup of any more has no inode in its
 * kernel, so no file of it is open: the handles of its created files go
 * too (created_handles.h).  Not at a FORGET that leaves lookups: a held or
 * queued one may come after a CREATE found the node again. */
static void forget_node(struct fsb_request *r, uint64_t nodeid, uint64_t nlookup)
{
    if (r->be->ops->forget(r->be, nodeid, nlookup) && r->s->created)
        fsb_created_forget(r->s->created, nodeid);
}

static int op_forget(struct fsb_request *r)
{
    struct fuse_forget_in in;
    if (!req_arg(r, &in, sizeof(in)))
        return -EINVAL;
    forget_node(r, r->in.nodeid, in.nlookup);
    return 0;
}

static int op_batch_forget(struct fsb_request *r)
{
    struct fuse_batch_forget_in in;
    struct fuse_forget_one one;
    if (!req_arg(r, &in, sizeof(in)) || (uint64_t)in.count * sizeof(one) != r->args.left)
        return -EINVAL;
    for (uint32_t i = 0; i < in.count && req_arg(r, &one, sizeof(one)); i++)
        forget_node(r, one.nodeid, one.nlookup);
    return 0;
}

/* Handles, lazy ones and fh 0 without opens included: see "files" below. */
enum file_use {
    FILE_UNOPENED, /* GETATTR, FLUSH: need no open file (-ENOENT: go by node) */
    FILE_BY_NODE,  /* SETATTR: fh 0 goes by node; a lazy handle is read-only */
    FILE_READ,     /* READ, COPY_FILE_RANGE's source */
    FILE_ANY,      /* FSYNC, LSEEK: read-only, else write-only */
    FILE_WRITE,    /* WRITE, FALLOCATE, COPY_FILE_RANGE's destination */
    FILE_LOCK,     /* GETLK, SETLK, SETLKW */
};
struct file_loan {
    struct fsb_lazy_entry *lazy;       /* a lazy handle's entry, or NULL */
    struct fsb_created_entry *created; /* a created file's (created_handles.h), or NULL */
    uint64_t opened;                   /* opened for this request alone, or FSB_NO_FH */
};
static bool is_lazy(uint64_t fh);
static int file_handle_take(struct fsb_request *r, uint64_t node, enum file_use use,
                            int file_flags, uint64_t *fh, struct file_loan *loan);
static void file_handle_give(struct fsb_request *r, const struct file_loan *loan);

static int op_getattr(struct fsb_request *r)
{
    struct fuse_getattr_in in;
    struct stat st;
    if (!req_arg(r, &in, sizeof(in)))
        return -EINVAL;
    uint64_t fh = FSB_NO_FH;
    struct file_loan loan = { .opened = FSB_NO_FH };
    /* a lazy handle no request opened yet, or fh 0 without opens: the
     * node's attributes are the same, and fstat need not open the file */
    if (in.getattr_flags & FUSE_GETATTR_FH) {
        fh = in.fh;
        int err = file_handle_take(r, r->in.nodeid, FILE_UNOPENED, 0, &fh, &loan);
        if (err == -ENOENT || (err == -EBADF && r->s->created))
            fh = FSB_NO_FH; /* by node; a refused handle reaches no file */
    }
    int err = r->be->ops->getattr(r->be, r->in.nodeid, fh, &st);
    file_handle_give(r, &loan);
    return err ? err : reply_attr(r, &st);
}

/*
 * xattr=map: a write, truncate or chown of a file drops its (guest)
 * security.capability, as a local one does.  The host kernel drops only
 * its own, and the guest kernel under HANDLE_KILLPRIV_V2 on some paths
 * only (not on direct I/O writes, for one), so the engine asks for it
 * after each; the backend removes it under security.capability's rule
 * (root, the owner or a writer).  Its answer (mostly ENODATA) changes
 * nothing of the request's.
 */
static void drop_mapped_caps(struct fsb_request *r, uint64_t nodeid)
{
    if (r->s->export->xattr_map)
        (void)r->be->ops->removexattr(r->be, &r->ctx, nodeid, FSB_XATTR_MAPPED_CAPS);
}

/* Translates FATTR_* into the backend's fields.  FATTR_CTIME comes only
 * from a guest with a writeback cache flushing the times it kept: ctime
 * itself cannot be set on Linux, but it marks the update as the kernel's
 * (FSB_SET_KERNEL_TIMES).  FATTR_LOCKOWNER carries nothing we need;
 * FATTR_KILL_SUIDGID is read by op_setattr. */
static void to_setattr(const struct fuse_setattr_in *in, struct fsb_setattr *set)
{
    static const struct { uint32_t fattr; unsigned fsb; } map[] = {
        { FATTR_MODE, FSB_SET_MODE },           { FATTR_UID, FSB_SET_UID },
        { FATTR_GID, FSB_SET_GID },             { FATTR_SIZE, FSB_SET_SIZE },
        { FATTR_ATIME, FSB_SET_ATIME },         { FATTR_MTIME, FSB_SET_MTIME },
        { FATTR_ATIME_NOW, FSB_SET_ATIME_NOW }, { FATTR_MTIME_NOW, FSB_SET_MTIME_NOW },
        { FATTR_CTIME, FSB_SET_KERNEL_TIMES },
    };
    *set = (struct fsb_setattr){
        .mode = in->mode & 07777,
        .uid = in->uid,
        .gid = in->gid,
        .size = (off_t)in->size,
        .atime = { .tv_sec = (time_t)in->atime, .tv_nsec = in->atimensec },
        .mtime = { .tv_sec = (time_t)in->mtime, .tv_nsec = in->mtimensec },
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (in->valid & map[i].fattr)
            set->valid |= map[i].fsb;
}

static int op_setattr(struct fsb_request *r)
{
    struct fuse_setattr_in in;
    struct fsb_setattr set;
    struct stat st;
    if (!req_arg(r, &in, sizeof(in)))
        return -EINVAL;
    if ((in.valid & FATTR_SIZE) && in.size > INT64_MAX)
        return -EFBIG;
    if (in.atimensec >= 1000000000 || in.mtimensec >= 1000000000)
        return -EINVAL;
    to_setattr(&in, &set);
    /* With FUSE_HANDLE_KILLPRIV_V2 the kernel flags a truncate by a caller
     * without CAP_FSETID, and every chown: a chown clears the bits on the
     * host by itself, and its flag says nothing about the caller. */
    if ((in.valid & FATTR_KILL_SUIDGID) && !(in.valid & (FATTR_UID | FATTR_GID)))
        r->ctx.kill_suidgid = true;
    uint64_t fh = in.valid & FATTR_FH ? in.fh : FSB_NO_FH;
    struct file_loan loan = { .opened = FSB_NO_FH };
    int err = fh == FSB_NO_FH ? 0 : file_handle_take(r, r->in.nodeid, FILE_BY_NODE, 0, &fh, &loan);
    if (!err)
        err = r->be->ops->setattr(r->be, &r->ctx, r->in.nodeid, fh, &set, &st);
    file_handle_give(r, &loan);
    if (err)
        return err;
    if (set.valid & (FSB_SET_SIZE | FSB_SET_UID | FSB_SET_GID))
        drop_mapped_caps(r, r->in.nodeid);
    return reply_attr(r, &st);
}

static int op_readlink(struct fsb_request *r)
{
    char target[PATH_MAX];
    int n = r->be->ops->readlink(r->be, r->in.nodeid, target, sizeof(target));
    if (n < 0)
        return n;
    return reply_put(r, target, (size_t)n);
}

static int op_symlink(struct fsb_request *r)
{
    char name[NAME_MAX + 1], target[PATH_MAX];
    struct fsb_entry e;
    int err = req_name(r, name, false);
    if (!err)
        err = req_string(r, target, sizeof(target));
    if (err || !req_args_done(r) || target[0] == 0)
        return err ? err : -EINVAL;
    err = r->be->ops->symlink(r->be, &r->ctx, r->in.nodeid, name, target, &e);
    return err ? err : reply_entry(r, &e);
}

static bool mknod_type_ok(mode_t mode)
{
    return S_ISREG(mode) || S_ISFIFO(mode) || S_ISSOCK(mode) || S_ISCHR(mode) || S_ISBLK(mode);
}

static int op_mknod(struct fsb_request *r)
{
    struct fuse_mknod_in in;
    char name[NAME_MAX + 1];
    struct fsb_entry e;
    if (!req_arg(r, &in, sizeof(in)))
        return -EINVAL;
    int err = req_name(r, name, false);
    if (err || !req_args_done(r))
        return err ? err : -EINVAL;
    if (!mknod_type_ok(in.mode))
        return -EINVAL;
    mode_t mode = (in.mode & S_IFMT) | (in.mode & 07777);
    take_umask(r, in.umask);
    err = r->be->ops->mknod(r->be, &r->ctx, r->in.nodeid, name, mode, in.rdev, &e);
    return err ? err : reply_entry(r, &e);
}

/*
 * Empty-directory notes (stream_hello.h, FSB_NOTIFY_EMPTY_DIR): the guest
 * kernel asks for every name before it creates it, and in a directory it
 * has just made the answer is known to be "none" as long as nobody else
 * adds one, which a coherent session is told of.  The backend checks the
 * directory is empty now that it is in the session's table (a name added
 * before is in it then; one added after is pushed), and the timeout is
 * taken after that check: a host change counted meanwhile (reply_timeout)
 * means no note.  Where nothing pushes (cache=auto, always, metadata), a
 * client of version 7 gets the note bounded: "none" holds for the mode's
 * timeout of a negative entry, which is what a LOOKUP of any name there
 * would have let the kernel cache, but for BOUNDED_NOTE_MAX_S at most: a
 * LOOKUP hides one name for the timeout, the note every name, and a day
 * of that (always, metadata) would hide the host's files from the guest
 * longer than any name the guest looked up.  The relay's side:
 * mount/missing_names.h.
 */
#define BOUNDED_NOTE_MAX_S 1
static void note_empty_dir(struct fsb_request *r, uint64_t nodeid)
{
    if (!r->lend || !r->s->empty_dir_notes || !r->be->ops->empty_dir)
        return;
    enum fsb_dir_state state = r->be->ops->empty_dir(r->be, nodeid);
    bool bounded = state == FSB_DIR_EMPTY;
    /* coherent promises changes at once: there, only a watch will do */
    if (state == FSB_DIR_NOT_EMPTY || (bounded && (r->s->coherent || !r->s->bounded_dir_notes)))
        return;
    uint64_t t = reply_timeout(r);
    if (!t)
        return;
    if (bounded && t > BOUNDED_NOTE_MAX_S)
        t = BOUNDED_NOTE_MAX_S;
    r->lend->empty_dir = (struct fsb_empty_dir_note){
        .nodeid = nodeid, .unique = r->in.unique, .entry_valid = t,
        .flags = bounded ? FSB_EMPTY_DIR_BOUNDED : 0 };
    r->lend->has_empty_dir = true;
}

static int op_mkdir(struct fsb_request *r)
{
    struct fuse_mkdir_in in;
    char name[NAME_MAX + 1];
    struct fsb_entry e;
    if (!req_arg(r, &in, sizeof(in)))
        return -EINVAL;
    int err = req_name(r, name, false);
    if (err || !req_args_done(r))
        return err ? err : -EINVAL;
    take_umask(r, in.umask);
    err = r->be->ops->mkdir(r->be, &r->ctx, r->in.nodeid, name, in.mode & 07777, &e);
    if (err)
        return err;
    note_empty_dir(r, e.nodeid);
    return reply_entry(r, &e);
}

/* UNLINK and RMDIR: a name and nothing else. */
static int remove_op(struct fsb_request *r, bool dir)
{
    char name[NAME_MAX + 1];
    int err = req_name(r, name, false);
    if (err || !req_args_done(r))
        return err ? err : -EINVAL;
    if (dir)
        return r->be->ops->rmdir(r->be, &r->ctx, r->in.nodeid, name);
    return r->be->ops->unlink(r->be, &r->ctx, r->in.nodeid, name);
}

static int op_unlink(struct fsb_request *r)
{
    return remove_op(r, false);
}

static int op_rmdir(struct fsb_request *r)
{
    return remove_op(r, true);
}

static int rename_names(struct fsb_request *r, uint64_t newdir, unsigned flags)
{
    char oldname[NAME_MAX + 1], newname[NAME_MAX + 1];
    int err = req_name(r, oldname, false);
    if (!err)
        err = req_name(r, newname, false);
    if (err || !req_args_done(r))
        return err ? err : -EINVAL;
    r->new_dir = newdir;
    return r->be->ops->rename(r->be, &r->ctx, r->in.nodeid, oldname, newdir, newname, flags);
}

static int op_rename(struct fsb_request *r)
{
    struct fuse_rename_in in;
    if (!req_arg(r, &in, sizeof(in)))
        return -EINVAL;
    return rename_names(r, in.newdir, 0);
}

static int op_rename2(struct fsb_request *r)
{
    struct fuse_rename2_in in;
    if (!req_arg(r, &in, sizeof(in)))
        return -EINVAL;
    /* RENAME_WHITEOUT creates a 0:0 character device: an overlayfs detail
     * a guest has no business making on the host. */
    if (in.flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE))
        return -EINVAL;
    if ((in.flags & RENAME_NOREPLACE) && (in.flags & RENAME_EXCHANGE))
        return -EINVAL;
    return rename_names(r, in.newdir, in.flags);
}

static int op_link(struct fsb_request *r)
{
    struct fuse_link_in in;
    char name[NAME_MAX + 1];
    struct fsb_entry e;
    if (!req_arg(r, &in, sizeof(in)))
        return -EINVAL;
    int err = req_name(r, name, false);
    if (err || !req_args_done(r))
        return err ? err : -EINVAL;
    err = r->be->ops->link(r->be, &r->ctx, in.oldnodeid, r->in.nodeid, name, &e);
    return err ? err : reply_entry(r, &e);
}

/* ---- directory handles ------------------------------------------------ */

/* The handle a READDIR or FSYNCDIR works with: the guest's, or, without
 * OPENDIR (dirs_without_open), one opened as the caller for this request
 * alone, which dir_handle_give closes. */
static int dir_handle_take(struct fsb_request *r, uint64_t *fh)
{
    if (!dirs_without_open(r->s))
        return 0;
    return r->be->ops->opendir(r->be, &r->ctx, r->in.nodeid, fh);
}

static void dir_handle_give(struct fsb_request *r, uint64_t fh)
{
    if (dirs_without_open(r->s))
        r->be->ops->releasedir(r->be, fh);
}

/* ---- files ------------------------------------------------------------ */

static bool open_writes(int flags)
{
    return (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
}

static int reply_open(struct fsb_request *r, uint64_t fh, bool dir)
{
    struct fuse_open_out oo = { .fh = fh, .open_flags = open_reply_flags(r->s, dir) };
    return reply_put(r, &oo, sizeof(oo));
}

/* NODE opened with FLAGS as the request's caller: an OPEN's, a lazy
 * handle's at its first use, fh 0's of a session without opens. */
static int open_file(struct fsb_request *r, uint64_t node, int flags, uint64_t *fh)
{
    if (r->s->export->readonly && open_writes(flags))
        return -EROFS;
    int err = r->be->ops->open(r->be, &r->ctx, node, flags, fh);
    if (!err && (flags & O_TRUNC))
        drop_mapped_caps(r, node);
    return err;
}

static int op_open(struct fsb_request *r)
{
    struct fuse_open_in in;
    uint64_t fh;
    if (!req_arg(r, &in, sizeof(in)) || !req_args_done(r))
        return -EINVAL;
    if (r->s->created)
        return -ENOSYS; /* a session without opens (created_handles.h) */
    r->ctx.kill_suidgid = in.open_flags & FUSE_OPEN_KILL_SUIDGID; /* O_TRUNC without FSETID */
    int err = open_file(r, r->in.nodeid, (int)in.flags, &fh);
    return err ? err : reply_open(r, fh, false);
}

/*
 * Lazy handles (lazy_handles.h): the guest's relay answered a plain
 * read-only OPEN itself, and the file is opened here when a request first
 * uses the handle: the request's node, read-only, as the request's caller
 * (its uid and groups, which for a read are those of the process reading,
 * the opener in all but odd cases: an fd passed to another user, or kept
 * across a setuid; docs/architecture.md), through open_file as an OPEN
 * would.  The guest kernel checked the open already (the relay does this
 * only under default_permissions); the host checks again at first use, so
 * an error an OPEN would have had comes at the first read instead.  A
 * lazy handle is read-only, as the host fd would be: a request that
 * writes through one gets EBADF without opening anything.
 *
 * Without opens (session.h, no_open: the guest's relay answers OPEN with
 * ENOSYS, so its kernel sends none and uses fh 0 for every file it opened
 * since, never a RELEASE; the backend gives out no handle 0): a request
 * with fh 0 opens its node for itself alone, as its caller, through
 * open_file (the checks and the budget of an OPEN), and the file is
 * closed before the reply (open_for_request).  It reads read-only, with
 * the file's O_NOATIME and exec mode (a binary the caller may run but not
 * read is read so, as on a local disk), writes write-only with its
 * O_APPEND (which a pwrite keeps); FSYNC and LSEEK take whichever access
 * the caller has.  Nothing stays open between requests, so there is
 * nothing for a FORGET or the end of the session to close, and locks
 * cannot live on such a file: the relay leaves them to the guest kernel
 * (no FUSE_POSIX_LOCKS), and a lock request with fh 0 is EBADF.  A guest
 * that RELEASEs the number of such a file while its request runs can
 * only make its own requests fail (the backend counts the file's users).
 * The files such a guest creates come with ids of created_handles.h,
 * which stand for their handles while these stay open, and for fh 0 once
 * they were let go.
 */
static bool is_lazy(uint64_t fh)
{
    return (fh & FSB_LAZY_FH) && fh != FSB_NO_FH; /* FSB_NO_FH has bit 63 too */
}

static int lazy_open(void *arg, uint64_t *fh)
{
    struct fsb_request *r = arg;
    return open_file(r, r->in.nodeid, O_RDONLY, fh);
}

static int open_for_request(struct fsb_request *r, uint64_t node, enum file_use use,
                            int file_flags, uint64_t *fh)
{
    switch (use) {
    case FILE_UNOPENED:
        return -ENOENT;
    case FILE_BY_NODE: /* as the caller: the O_TRUNC of an open too */
        *fh = FSB_NO_FH;
        return 0;
    case FILE_LOCK:
        return -EBADF;
    case FILE_READ:
        return open_file(r, node, O_RDONLY | (file_flags & (O_NOATIME | FSB_OPEN_EXEC)), fh);
    case FILE_ANY: {
        int err = open_file(r, node, O_RDONLY, fh);
        return err == -EACCES ? open_file(r, node, O_WRONLY, fh) : err;
    }
    case FILE_WRITE:
        return open_file(r, node, O_WRONLY | (file_flags & O_APPEND), fh);
    }
    return -EINVAL;
}

/* The backend handle for the guest's *FH used on NODE as USE says: itself;
 * or, for a lazy handle (on the request's node), the file it stands for,
 * opened now if none is yet (but -ENOENT for FILE_UNOPENED, -EBADF for
 * FILE_WRITE and FILE_BY_NODE, -EBADF if it was opened for another node);
 * or, for fh 0 without opens, NODE opened for this request (FILE_FLAGS:
 * the file's flags, as READ and WRITE carry them; FSB_NO_FH for
 * FILE_BY_NODE, which opens nothing).  *LOAN goes to file_handle_give.
 * A session that does not accept lazy handles passes them on: the backend
 * knows no such handle (EBADF), nor handle 0. */
static int file_handle_take(struct fsb_request *r, uint64_t node, enum file_use use,
                            int file_flags, uint64_t *fh, struct file_loan *loan)
{
    *loan = (struct file_loan){ .opened = FSB_NO_FH };
    if (r->s->created && *fh != 0 && !is_lazy(*fh)) {
        if (!fsb_created_is_id(*fh))
            return -EBADF; /* no other file handle exists here */
        if (!fsb_created_take(r->s->created, *fh, fh, &loan->created))
            *fh = 0; /* let go of: served as the node's fh 0 */
    }
    if (*fh == 0 && r->s->no_open) {
        int err = open_for_request(r, node, use, file_flags, fh);
        if (!err)
            loan->opened = *fh;
        return err;
    }
    if (!is_lazy(*fh) || !r->s->lazy)
        return 0;
    if (use == FILE_WRITE || use == FILE_BY_NODE)
        return -EBADF;
    return fsb_lazy_take(r->s->lazy, *fh, r->in.nodeid, use == FILE_UNOPENED ? NULL : lazy_open,
                         r, fh, &loan->lazy);
}

static void file_handle_give(struct fsb_request *r, const struct file_loan *loan)
{
    if (loan->created)
        fsb_created_give(r->s->created, loan->created);
    if (loan->lazy)
        fsb_lazy_give(r->s->lazy, loan->lazy);
    if (loan->opened != FSB_NO_FH)
        r->be->ops->release(r->be, loan->opened);
}

/* CREATE and TMPFILE: fuse_create_in and a name (TMPFILE's is "/", read
 * and not used). */
static int read_create_args(struct fsb_request *r, struct fuse_create_in *in,
                            char name[NAME_MAX + 1], bool tmpfile)
{
    if (!req_arg(r, in, sizeof(*in)))
        return -EINVAL;
    int err = tmpfile ? req_string(r, name, NAME_MAX + 1) : req_name(r, name, false);
    if (err || !req_args_done(r))
        return err ? err : -EINVAL;
    r->ctx.kill_suidgid = in->open_flags & FUSE_OPEN_KILL_SUIDGID; /* O_TRUNC without FSETID */
    take_umask(r, in->umask);
    return 0;
}

/* CREATE's and TMPFILE's reply: the entry, then the open file (by an id
 * of its own in a session without opens, created_handles.h). */
static int reply_created(struct fsb_request *r, const struct fsb_entry *e, uint64_t fh)
{
    if (r->s->created) {
        int err = fsb_created_add(r->s->created, e->nodeid, fh, &fh);
        if (err) {
            r->be->ops->release(r->be, fh);
            r->be->ops->forget(r->be, e->nodeid, 1);
            return err;
        }
    }
    int err = reply_entry(r, e);
    return err ? err : reply_open(r, fh, false);
}

static int op_create(struct fsb_request *r)
{
    struct fuse_create_in in;
    char name[NAME_MAX + 1];
    struct fsb_entry e;
    uint64_t fh;
    int err = read_create_args(r, &in, name, false);
    if (!err)
        err = r->be->ops->create(r->be, &r->ctx, r->in.nodeid, name, S_IFREG | (in.mode & 07777),
                                 (int)in.flags, &e, &fh);
    return err ? err : reply_created(r, &e, fh);
}

/* FUSE_TMPFILE (open(dir, O_TMPFILE)).  A backend without unnamed files
 * (overlay) answers ENOSYS: the kernel then fails O_TMPFILE with
 * EOPNOTSUPP, as a local filesystem without it does, and stops asking. */
static int op_tmpfile(struct fsb_request *r)
{
    struct fuse_create_in in;
    char name[NAME_MAX + 1];
    struct fsb_entry e;
    uint64_t fh;
    int err = read_create_args(r, &in, name, true);
    if (!err && !r->be->ops->tmpfile)
        err = -ENOSYS;
    if (!err)
        err = r->be->ops->tmpfile(r->be, &r->ctx, r->in.nodeid, S_IFREG | (in.mode & 07777),
                                  (int)in.flags, &e, &fh);
    return err ? err : reply_created(r, &e, fh);
}

static bool offset_ok(uint64_t off, uint64_t len)
{
    return off <= INT64_MAX && len <= INT64_MAX - off;
}

/* The data of a READ into the transport's pipe (fsb_reply_pipe), spliced
 * from the host file.  Returns the bytes, -errno, or -EOPNOTSUPP when
 * there is no pipe or the file cannot be spliced: then it is copied. */
static ssize_t read_to_pipe(struct fsb_request *r, const struct fuse_read_in *in)
{
    struct fsb_reply_pipe *lend = r->lend;
    if (!lend || !r->be->ops->read_to_pipe)
        return -EOPNOTSUPP;
    lend->pipe = lend->take(lend, in->size, (off_t)in->offset);
    if (!lend->pipe)
        return -EOPNOTSUPP;
    ssize_t n = r->be->ops->read_to_pipe(r->be, in->fh, (off_t)in->offset, in->size,
                                         lend->pipe);
    if (n == -EINVAL)
        return -EOPNOTSUPP;
    if (n >= 0)
        lend->held = (size_t)n;
    return n;
}

/* The data of a READ straight into the reply buffer (guest memory on
 * virtio-fs). */
static ssize_t read_to_reply(struct fsb_request *r, const struct fuse_read_in *in)
{
    struct iovec data[MAX_DATA_SLICES];
    int cnt = iov_cursor_slice(&r->out, in->size, data, MAX_DATA_SLICES);
    if (cnt < 0)
        return -EINVAL;
    ssize_t n = r->be->ops->read(r->be, in->fh, (off_t)in->offset, data, cnt);
    if (n >= 0)
        iov_cursor_skip(&r->out, (size_t)n);
    return n;
}

static int op_read(struct fsb_request *r)
{
    struct fuse_read_in in;
    if (!req_arg(r, &in, sizeof(in)) || !req_args_done(r))
        return -EINVAL;
    if (in.size > r->s->max_write || !offset_ok(in.offset, in.size))
        return -EINVAL;
    struct file_loan loan;
    int err = file_handle_take(r, r->in.nodeid, FILE_READ, (int)in.flags, &in.fh, &loan);
    if (err)
        return err;
    ssize_t n = read_to_pipe(r, &in);
    if (n == -EOPNOTSUPP)
        n = read_to_reply(r, &in);
    file_handle_give(r, &loan);
    if (n < 0)
        return (int)n;
    r->out_len += (size_t)n;
    return 0;
}

static int op_write(struct fsb_request *r)
{
    struct fuse_write_in in;
    struct iovec data[MAX_DATA_SLICES];
    if (!req_arg(r, &in, sizeof(in)))
        return -EINVAL;
    if (in.size != r->args.left || in.size > r->s->max_write || !offset_ok(in.offset, in.size))
        return -EINVAL;
    int cnt = iov_cursor_slice(&r->args, in.size, data, MAX_DATA_SLICES);
    if (cnt < 0)
        return -EINVAL;
    struct file_loan loan;
    int err = file_handle_take(r, r->in.nodeid, FILE_WRITE, (int)in.flags, &in.fh, &loan);
    if (err)
        return err;
    r->ctx.kill_suidgid = in.write_flags & FUSE_WRITE_KILL_SUIDGID;
    ssize_t n = r->be->ops->write(r->be, &r->ctx, in.fh, (off_t)in.offset, data, cnt);
    file_handle_give(r, &loan);
    if (n < 0)
        return (int)n;
    drop_mapped_caps(r, r->in.nodeid);
    struct fuse_write_out out = { .size = (uint32_t)n };
    return reply_put(r, &out, sizeof(out));
}

static int op_flush(struct fsb_request *r)
{
    struct fuse_flush_in in;
    if (!req_arg(r, &in, sizeof(in)))
        return -EINVAL;
    /* Forwarded only for a lock owner that once locked (flush_shortcut.h),
     * or always (flush=host).  A lazy handle no request opened has nothing
     * to write back and is not opened for this: its owner's record locks
     * on the node's file go all the same, as a local close would. */
    struct file_loan loan;
    int err = file_handle_take(r, r->in.nodeid, FILE_UNOPENED, 0, &in.fh, &loan);
    if (err == -ENOENT)
        return r->be->ops->drop_locks(r->be, r->in.nodeid, in.lock_owner);
    if (!err)
        err = r->be->ops->flush(r->be, in.fh, in.lock_owner);
    file_handle_give(r, &loan);
    return err;
}

static int release_op(struct fsb_request *r, bool dir)
{
    struct fuse_release_in in;
    if (!req_arg(r, &in, sizeof(in)))
        return -EINVAL;
    /* FUSE_RELEASE_FLOCK_UNLOCK needs nothing: closing the host fd drops
     * its flock. */
    if (dir)
        return r->be->ops->releasedir(r->be, in.fh);
    if (is_lazy(in.fh) && r->s->lazy)
        return fsb_lazy_release(r->s->lazy, in.fh);
    if (r->s->created && !is_lazy(in.fh)) { /* no other file handle exists here */
        if (fsb_created_is_id(in.fh))
            fsb_created_release(r->s->created, in.fh);
        return 0;
    }
    return r->be->ops->release(r->be, in.fh);
}

static int op_release(struct fsb_request *r)
{
    return release_op(r, false);
}

/* Without OPENDIR the guest holds no directory handle: the only ones are
 * those READDIR and FSYNCDIR open for themselves (dir_handle_take), and a
 * RELEASEDIR with a guessed fh must not close one of another request. */
static int op_releasedir(struct fsb_request *r)
{
    if (dirs_without_open(r->s))
        return 0;
    return release_op(r, true);
}

static int fsync_file(struct fsb_request *r, uint64_t fh, bool datasync)
{
    struct file_loan loan;
    int err = file_handle_take(r, r->in.nodeid, FILE_ANY, 0, &fh, &loan);
    if (!err)
        err = r->be->ops->fsync(r->be, fh, datasync);
    file_handle_give(r, &loan);
    return err;
}

static int fsync_op(struct fsb_request *r, bool dir)
{
    struct fuse_fsync_in in;
    if (!req_arg(r, &in, sizeof(in)))
        return -EINVAL;
    bool datasync = in.fsync_flags & 1;
    if (!dir)
        return fsync_file(r, in.fh, datasync);
    uint64_t fh = in.fh;
    int err = dir_handle_take(r, &fh);
    if (err)
        return err;
    err = r->be->ops->fsyncdir(r->be, fh, datasync);
    dir_handle_give(r, fh);
    return err;
}

static int op_fsync(struct fsb_request *r)
{
    return fsync_op(r, false);
}

static int op_fsyncdir(struct fsb_request *r)
{
    return fsync_op(r, true);
}

static int op_fallocate(struct fsb_request *r)
{
    struct fuse_fallocate_in in;
    if (!req_arg(r, &in, sizeof(in)))
        return -EINVAL;
    if (!offset_ok(in.offset, in.length))
        return -EINVAL;
    struct file_loan loan;
    int err = file_handle_take(r, r->in.nodeid, FILE_WRITE, 0, &in.fh, &loan);
    if (err)
        return err;
    /* FALLOCATE carries no KILL_SUIDGID flag, yet on a local filesystem it
     * clears the bits as a write does.  Guest root is taken to hold
     * CAP_FSETID; anyone else cannot. */
    r->ctx.kill_suidgid = r->ctx.uid != 0;
    err = r->be->ops->fallocate(r->be, &r->ctx, in.fh, (int)in.mode, (off_t)in.offset,
                                (off_t)in.length);
    file_handle_give(r, &loan);
    if (!err)
        drop_mapped_caps(r, r->in.nodeid);
    return err;
}

static int op_lseek(struct fsb_request *r)
{
    struct fuse_lseek_in in;
    if (!req_arg(r, &in, sizeof(in)))
        return -EINVAL;
    if (in.whence != SEEK_SET && in.whence != SEEK_CUR && in.whence != SEEK_END &&
        in.whence != SEEK_DATA && in.whence != SEEK_HOLE)
        return -EINVAL;
    struct file_loan loan;
    int err = file_handle_take(r, r->in.nodeid, FILE_ANY, 0, &in.fh, &loan);
    if (err)
        return err;
    off_t off = r->be->ops->lseek(r->be, in.fh, (off_t)in.offset, (int)in.whence);
    file_handle_give(r, &loan);
    if (off < 0)
        return (int)off;
    struct fuse_lseek_out out = { .offset = (uint64_t)off };
    return reply_put(r, &out, sizeof(out));
}

static int op_copy_file_range(struct fsb_request *r)
{
    struct fuse_copy_file_range_in in;
    if (!req_arg(r, &in, sizeof(in)))
        return -EINVAL;
    if (in.flags != 0)
        return -EINVAL;
    /* The reply counts bytes in 32 bits: copy at most 1 GiB per request;
     * the guest kernel loops over short copies. */
    uint64_t len = in.len > COPY_RANGE_MAX ? COPY_RANGE_MAX : in.len;
    if (!offset_ok(in.off_in, len) || !offset_ok(in.off_out, len))
        return -EINVAL;
    /* the header's node is fh_in's */
    struct file_loan from, to;
    int err = file_handle_take(r, in.nodeid_out, FILE_WRITE, 0, &in.fh_out, &to);
    if (err)
        return err;
    err = file_handle_take(r, r->in.nodeid, FILE_READ, 0, &in.fh_in, &from);
    if (err) {
        file_handle_give(r, &to);
        return err;
    }
    /* No KILL_SUIDGID flag either, yet the guest kernel leaves the
     * clearing to us under HANDLE_KILLPRIV_V2: as for FALLOCATE. */
    r->ctx.kill_suidgid = r->ctx.uid != 0;
    ssize_t n = r->be->ops->copy_file_range(r->be, &r->ctx, in.fh_in, (off_t)in.off_in,
                                            in.fh_out, (off_t)in.off_out, len);
    file_handle_give(r, &from);
    file_handle_give(r, &to);
    if (n < 0)
        return (int)n;
    drop_mapped_caps(r, in.nodeid_out);
    struct fuse_write_out out = { .size = (uint32_t)n };
    return reply_put(r, &out, sizeof(out));
}

static int op_statfs(struct fsb_request *r)
{
    struct statvfs sv;
    int err = r->be->ops->statfs(r->be, r->in.nodeid, &sv);
    if (err)
        return err;
    struct fuse_statfs_out out = { .st = {
        .blocks = sv.f_blocks, .bfree = sv.f_bfree, .bavail = sv.f_bavail,
        .files = sv.f_files, .ffree = sv.f_ffree, .bsize = (uint32_t)sv.f_bsize,
        .namelen = (uint32_t)sv.f_namemax, .frsize = (uint32_t)sv.f_frsize } };
    return reply_put(r, &out, sizeof(out));
}

static int op_access(struct fsb_request *r)
{
    struct fuse_access_in in;
    if (!req_arg(r, &in, sizeof(in)))
        return -EINVAL;
    if (in.mask & ~(uint32_t)(R_OK | W_OK | X_OK))
        return -EINVAL;
    if ((in.mask & W_OK) && r->s->export->readonly)
        return -EROFS;
    return r->be->ops->access(r->be, &r->ctx, r->in.nodeid, (int)in.mask);
}

static int op_syncfs(struct fsb_request *r)
{
    struct fuse_syncfs_in in;
    if (!req_arg(r, &in, sizeof(in)))
        return -EINVAL;
    return r->be->ops->syncfs(r->be);
}

/* ---- extended attributes --------------------------------------------- */

/* Reads the guest's xattr name: -ERANGE when too long, as the host says. */
static int read_xattr_name(struct fsb_request *r, char name[XATTR_NAME_MAX_LEN + 1])
{
    int err = req_string(r, name, XATTR_NAME_MAX_LEN + 1);
    if (err || name[0] == 0)
        return err == -ENAMETOOLONG ? -ERANGE : -EINVAL;
    return 0;
}

/* The name the backend gets for the guest's NAME: NAME itself, or under
 * xattr=map its host name, written to HOST (xattr_map.h). */
static int host_xattr_name(const struct fsb_request *r, const char *name,
                           char host[XATTR_NAME_MAX_LEN + 1], const char **out)
{
    *out = name;
    if (!r->s->export->xattr_map)
        return 0;
    *out = host;
    return xattr_map_to_host(name, host, XATTR_NAME_MAX_LEN + 1);
}

static int op_setxattr(struct fsb_request *r)
{
    /* Without FUSE_SETXATTR_EXT (not negotiated) the kernel sends the
     * short, 8-byte form of fuse_setxattr_in. */
    struct fuse_setxattr_in in = { 0 };
    char name[XATTR_NAME_MAX_LEN + 1], host[XATTR_NAME_MAX_LEN + 1];
    const char *hname = NULL;
    if (!req_arg(r, &in, FUSE_COMPAT_SETXATTR_IN_SIZE))
        return -EINVAL;
    int err = read_xattr_name(r, name);
    if (!err && (in.size != r->args.left || in.size > XATTR_VALUE_MAX))
        err = -EINVAL;
    if (!err)
        err = host_xattr_name(r, name, host, &hname);
    if (err)
        return err;
    void *value = malloc(in.size ? in.size : 1);
    if (!value)
        return -ENOMEM;
    req_arg(r, value, in.size);
    err = r->be->ops->setxattr(r->be, &r->ctx, r->in.nodeid, hname, value, in.size,
                               (int)in.flags);
    free(value);
    if (!err && r->lend && strcmp(name, "system.posix_acl_access") == 0)
        r->lend->stale_attrs = r->in.nodeid; /* the host may have changed the mode */
    return err;
}

/* GETXATTR and LISTXATTR: size 0 asks for the size, else the data. */
static int reply_xattr_data(struct fsb_request *r, uint32_t size, ssize_t n, const void *buf)
{
    if (n < 0)
        return (int)n;
    if (size == 0) {
        struct fuse_getxattr_out out = { .size = (uint32_t)n };
        return reply_put(r, &out, sizeof(out));
    }
    return reply_put(r, buf, (size_t)n);
}

static int op_getxattr(struct fsb_request *r)
{
    struct fuse_getxattr_in in;
    char name[XATTR_NAME_MAX_LEN + 1], host[XATTR_NAME_MAX_LEN + 1];
    const char *hname = NULL;
    if (!req_arg(r, &in, sizeof(in)))
        return -EINVAL;
    int err = read_xattr_name(r, name);
    if (!err && !req_args_done(r))
        err = -EINVAL;
    if (!err)
        err = host_xattr_name(r, name, host, &hname);
    if (err)
        return err;
    if (in.size > XATTR_VALUE_MAX)
        in.size = XATTR_VALUE_MAX;
    char *buf = malloc(in.size ? in.size : 1);
    if (!buf)
        return -ENOMEM;
    ssize_t n = r->be->ops->getxattr(r->be, &r->ctx, r->in.nodeid, hname, buf, in.size);
    err = reply_xattr_data(r, in.size, n, buf);
    free(buf);
    return err;
}

/* A host list of a few names (most are) fits this much of the stack;
 * only a longer one costs a heap buffer, of the largest size. */
#define XATTR_LIST_ON_STACK 1024

/* The guest's list in BUF (SIZE bytes, 0: only its length).  Under
 * xattr=map the host's list is read whole and translated whatever SIZE
 * is: the length the guest is told, and its ERANGE, must be the
 * translated list's. */
static ssize_t list_xattrs(struct fsb_request *r, char *buf, uint32_t size)
{
    if (!r->s->export->xattr_map)
        return r->be->ops->listxattr(r->be, &r->ctx, r->in.nodeid, buf, size);
    char stack[XATTR_LIST_ON_STACK], *all = stack, *heap = NULL;
    ssize_t n = r->be->ops->listxattr(r->be, &r->ctx, r->in.nodeid, all, sizeof(stack));
    if (n == -ERANGE) {
        if (!(heap = malloc(XATTR_VALUE_MAX)))
            return -ENOMEM;
        all = heap;
        n = r->be->ops->listxattr(r->be, &r->ctx, r->in.nodeid, all, XATTR_VALUE_MAX);
    }
    if (n >= 0)
        n = (ssize_t)xattr_map_list_to_guest(all, (size_t)n, r->ctx.uid == 0);
    if (n > 0 && size && (size_t)n > size)
        n = -ERANGE;
    else if (n > 0 && size)
        memcpy(buf, all, (size_t)n);
    free(heap);
    return n;
}

static int op_listxattr(struct fsb_request *r)
{
    struct fuse_getxattr_in in;
    if (!req_arg(r, &in, sizeof(in)) || !req_args_done(r))
        return -EINVAL;
    if (in.size > XATTR_VALUE_MAX)
        in.size = XATTR_VALUE_MAX;
    char *buf = malloc(in.size ? in.size : 1);
    if (!buf)
        return -ENOMEM;
    ssize_t n = list_xattrs(r, buf, in.size);
    int err = reply_xattr_data(r, in.size, n, buf);
    free(buf);
    return err;
}

static int op_removexattr(struct fsb_request *r)
{
    char name[XATTR_NAME_MAX_LEN + 1], host[XATTR_NAME_MAX_LEN + 1];
    const char *hname = NULL;
    int err = read_xattr_name(r, name);
    if (!err && !req_args_done(r))
        err = -EINVAL;
    if (!err)
        err = host_xattr_name(r, name, host, &hname);
    return err ? err : r->be->ops->removexattr(r->be, &r->ctx, r->in.nodeid, hname);
}

/* ---- directories ------------------------------------------------------ */

static int op_opendir(struct fsb_request *r)
{
    struct fuse_open_in in;
    uint64_t fh;
    if (!req_arg(r, &in, sizeof(in)) || !req_args_done(r))
        return -EINVAL;
    if (dirs_without_open(r->s))
        return -ENOSYS; /* the kernel stops sending OPENDIR, see above */
    int err = r->be->ops->opendir(r->be, &r->ctx, r->in.nodeid, &fh);
    return err ? err : reply_open(r, fh, true);
}

struct dir_fill {
    struct fsb_request *r;
    size_t room; /* bytes the guest asked for, minus what was written */
    bool plus;
    bool full;   /* an entry did not fit */
    bool delayed; /* the test delay after the first looked-up entry is done */
    struct iov_cursor start; /* the reply's first payload byte */
    size_t *entries;  /* READDIRPLUS: payload offsets of the fuse_entry_outs */
    size_t n_entries;
    size_t max_entries;
};

/* The most fuse_direntplus a reply of ROOM bytes can hold: each has a
 * name of at least one byte. */
static size_t max_direntplus(size_t room)
{
    return room / (sizeof(struct fuse_entry_out) + FUSE_DIRENT_ALIGN(FUSE_NAME_OFFSET + 1)) + 1;
}

/* Writes one fuse_entry_out of a READDIRPLUS reply and notes where. */
static void put_dirent_entry(struct dir_fill *f, const struct fsb_dirent *d)
{
    struct fuse_entry_out eo = { 0 };
    if (d->entry) {
        fill_entry_out(f->r, &eo, d->entry);
        if (f->n_entries < f->max_entries)
            f->entries[f->n_entries++] = f->r->out_len;
    }
    reply_put(f->r, &eo, sizeof(eo));
    /* Tests only: a host change to this entry lands while the rest of the
     * reply is looked up (see uncache_listing). */
    if (d->entry && !f->delayed && f->r->s->test_lookup_delay_ms) {
        f->delayed = true;
        usleep(f->r->s->test_lookup_delay_ms * 1000u);
    }
}

/* Writes one fuse_dirent or fuse_direntplus; false if it does not fit. */
static bool fill_dirent(void *cookie, const struct fsb_dirent *d)
{
    struct dir_fill *f = cookie;
    size_t namelen = strlen(d->name);
    size_t head = f->plus ? sizeof(struct fuse_entry_out) : 0;
    size_t size = head + FUSE_DIRENT_ALIGN(FUSE_NAME_OFFSET + namelen);
    if (size > f->room || size > f->r->out.left) {
        f->full = true;
        return false;
    }
    if (f->plus)
        put_dirent_entry(f, d);
    struct fuse_dirent de = { .ino = d->ino, .off = d->next_offset,
                              .namelen = (uint32_t)namelen, .type = d->type };
    static const char zeros[8];
    reply_put(f->r, &de, FUSE_NAME_OFFSET);
    reply_put(f->r, d->name, namelen);
    reply_put(f->r, zeros, FUSE_DIRENT_ALIGN(FUSE_NAME_OFFSET + namelen) -
                               (FUSE_NAME_OFFSET + namelen));
    f->room -= size;
    return true;
}

/*
 * A READDIRPLUS reply's timeouts are decided once, after the backend
 * listed and looked up every entry: a host change to entry 1 while
 * entries 2..N were looked up was pushed at once (the session knew entry
 * 1's node id), the guest dropped it (no such inode yet), and the reply
 * would then install entry 1's old attributes for a day.  So when any
 * change came in since the request did (reply_timeout), every entry
 * already written is made uncached: its entry_valid, attr_valid and their
 * nsec fields, which lie next to each other, are zeroed in place.
 */
static void uncache_listing(struct dir_fill *f)
{
    static const char zeros[offsetof(struct fuse_entry_out, attr) -
                            offsetof(struct fuse_entry_out, entry_valid)];
    _Static_assert(offsetof(struct fuse_entry_out, attr_valid_nsec) + sizeof(uint32_t) ==
                       offsetof(struct fuse_entry_out, attr),
                   "the timeouts end where the attributes begin");
    if (reply_timeout(f->r) != 0)
        return;
    for (size_t i = 0; i < f->n_entries; i++) {
        struct iov_cursor c = f->start;
        iov_cursor_skip(&c, f->entries[i] + offsetof(struct fuse_entry_out, entry_valid));
        iov_cursor_write(&c, zeros, sizeof(zeros));
    }
}

static int readdir_op(struct fsb_request *r, bool plus)
{
    struct fuse_read_in in;
    if (!req_arg(r, &in, sizeof(in)) || !req_args_done(r))
        return -EINVAL;
    struct dir_fill f = { .r = r, .room = in.size, .plus = plus, .start = r->out };
    if (plus && r->s->coherent) { /* only coherent replies are uncached afterwards */
        f.max_entries = max_direntplus(in.size < r->out.left ? in.size : r->out.left);
        f.entries = malloc(f.max_entries * sizeof(*f.entries));
        if (!f.entries)
            return -ENOMEM;
    }
    uint64_t fh = in.fh;
    int err = dir_handle_take(r, &fh);
    if (!err) {
        err = r->be->ops->readdir(r->be, r->in.nodeid, fh, in.offset, plus, fill_dirent, &f);
        dir_handle_give(r, fh);
    }
    if (!err)
        uncache_listing(&f);
    free(f.entries);
    /* An empty reply means the end of the directory: a buffer too small
     * for the next entry must say so instead, as getdents does. */
    if (!err && f.full && r->out_len == 0)
        return -EINVAL;
    return err;
}

static int op_readdir(struct fsb_request *r)
{
    return readdir_op(r, false);
}

static int op_readdirplus(struct fsb_request *r)
{
    return readdir_op(r, true);
}

/* ---- locks ------------------------------------------------------------ */

static bool lock_cancelled(void *cookie)
{
    const struct fsb_waiter *w = cookie;
    return atomic_load(&w->interrupted);
}

static int read_lock_args(struct fsb_request *r, struct fuse_lk_in *in, struct fsb_lock *lock)
{
    if (!req_arg(r, in, sizeof(*in)))
        return -EINVAL;
    const struct fuse_file_lock *lk = &in->lk;
    if (lk->type != F_RDLCK && lk->type != F_WRLCK && lk->type != F_UNLCK)
        return -EINVAL;
    if (lk->start > INT64_MAX || lk->end < lk->start)
        return -EINVAL;
    *lock = (struct fsb_lock){ .type = (int)lk->type, .start = (off_t)lk->start,
                               .end = lk->end > INT64_MAX ? FSB_LOCK_TO_EOF : (off_t)lk->end,
                               .pid = (pid_t)lk->pid, .owner = in->owner };
    return 0;
}

static int op_getlk(struct fsb_request *r)
{
    struct fuse_lk_in in;
    struct fsb_lock lock;
    struct file_loan loan = { .opened = FSB_NO_FH };
    int err = read_lock_args(r, &in, &lock);
    if (!err)
        err = file_handle_take(r, r->in.nodeid, FILE_LOCK, 0, &in.fh, &loan);
    if (!err)
        err = r->be->ops->getlk(r->be, in.fh, &lock);
    file_handle_give(r, &loan);
    if (err)
        return err;
    struct fuse_lk_out out = { .lk = { .start = (uint64_t)lock.start, .end = (uint64_t)lock.end,
                                       .type = (uint32_t)lock.type, .pid = (uint32_t)lock.pid } };
    return reply_put(r, &out, sizeof(out));
}

/* SETLK and SETLKW; with FUSE_LK_FLOCK, flock(2).  A waiting lock is
 * registered so that FUSE_INTERRUPT (or the session's end) can stop it.
 * A SETLKW on a thread that must not wait only tries: ENOLCK (what
 * F_SETLKW answers when the system cannot hold more locks) if it is taken. */
static int setlk_op(struct fsb_request *r, bool wants_wait)
{
    struct fuse_lk_in in;
    struct fsb_lock lock;
    struct file_loan loan = { .opened = FSB_NO_FH };
    int err = read_lock_args(r, &in, &lock);
    if (!err)
        err = file_handle_take(r, r->in.nodeid, FILE_LOCK, 0, &in.fh, &loan);
    if (err)
        return err;
    bool wait = wants_wait && r->may_wait;
    struct fsb_waiter w = { .unique = r->in.unique };
    if (wait)
        fsb_session_add_waiter(r->s, &w);
    if (in.lk_flags & FUSE_LK_FLOCK) {
        int op = lock.type == F_RDLCK ? LOCK_SH : lock.type == F_WRLCK ? LOCK_EX : LOCK_UN;
        err = r->be->ops->flock(r->be, in.fh, op, wait, lock_cancelled, &w);
    } else {
        err = r->be->ops->setlk(r->be, in.fh, &lock, wait, lock_cancelled, &w);
    }
    if (wait)
        fsb_session_remove_waiter(r->s, &w);
    file_handle_give(r, &loan);
    if (wants_wait && !wait && err == -EAGAIN)
        err = -ENOLCK;
    return err;
}

static int op_setlk(struct fsb_request *r)
{
    return setlk_op(r, false);
}

static int op_setlkw(struct fsb_request *r)
{
    return setlk_op(r, true);
}

static int op_interrupt(struct fsb_request *r)
{
    struct fuse_interrupt_in in;
    if (!req_arg(r, &in, sizeof(in)))
        return -EINVAL;
    fsb_session_interrupt(r->s, in.unique);
    return 0;
}

static int op_notify_reply(struct fsb_request *r)
{
    (void)r; /* we send no retrieve requests, so there is nothing to match */
    return 0;
}

/* ---- the table -------------------------------------------------------- */

#define OP(code, fn, flags) [code] = { fn, #code, flags }

static const struct fsb_op ops[] = {
    OP(FUSE_LOOKUP, op_lookup, 0),
    OP(FUSE_FORGET, op_forget, OP_NO_REPLY),
    OP(FUSE_GETATTR, op_getattr, 0),
    OP(FUSE_SETATTR, op_setattr, OP_MODIFIES),
    OP(FUSE_READLINK, op_readlink, 0),
    OP(FUSE_SYMLINK, op_symlink, OP_MODIFIES | OP_DIR_CHANGE),
    OP(FUSE_MKNOD, op_mknod, OP_MODIFIES | OP_DIR_CHANGE),
    OP(FUSE_MKDIR, op_mkdir, OP_MODIFIES | OP_DIR_CHANGE),
    OP(FUSE_UNLINK, op_unlink, OP_MODIFIES | OP_DIR_CHANGE),
    OP(FUSE_RMDIR, op_rmdir, OP_MODIFIES | OP_DIR_CHANGE),
    OP(FUSE_RENAME, op_rename, OP_MODIFIES | OP_DIR_CHANGE),
    OP(FUSE_LINK, op_link, OP_MODIFIES | OP_DIR_CHANGE),
    OP(FUSE_OPEN, op_open, 0),
    OP(FUSE_READ, op_read, 0),
    OP(FUSE_WRITE, op_write, OP_MODIFIES),
    OP(FUSE_STATFS, op_statfs, 0),
    OP(FUSE_RELEASE, op_release, 0),
    OP(FUSE_FSYNC, op_fsync, 0),
    OP(FUSE_SETXATTR, op_setxattr, OP_MODIFIES | OP_XATTR),
    OP(FUSE_GETXATTR, op_getxattr, OP_XATTR),
    OP(FUSE_LISTXATTR, op_listxattr, OP_XATTR),
    OP(FUSE_REMOVEXATTR, op_removexattr, OP_MODIFIES | OP_XATTR),
    OP(FUSE_FLUSH, op_flush, 0),
    OP(FUSE_INIT, op_init, 0),
    OP(FUSE_OPENDIR, op_opendir, 0),
    OP(FUSE_READDIR, op_readdir, OP_DIR_LISTING),
    OP(FUSE_RELEASEDIR, op_releasedir, 0),
    OP(FUSE_FSYNCDIR, op_fsyncdir, 0),
    OP(FUSE_GETLK, op_getlk, 0),
    OP(FUSE_SETLK, op_setlk, 0),
    OP(FUSE_SETLKW, op_setlkw, 0),
    OP(FUSE_ACCESS, op_access, 0),
    OP(FUSE_CREATE, op_create, OP_MODIFIES | OP_DIR_CHANGE),
    OP(FUSE_INTERRUPT, op_interrupt, OP_NO_REPLY),
    OP(FUSE_DESTROY, op_destroy, 0),
    OP(FUSE_NOTIFY_REPLY, op_notify_reply, OP_NO_REPLY),
    OP(FUSE_BATCH_FORGET, op_batch_forget, OP_NO_REPLY),
    OP(FUSE_FALLOCATE, op_fallocate, OP_MODIFIES),
    OP(FUSE_READDIRPLUS, op_readdirplus, OP_DIR_LISTING),
    OP(FUSE_RENAME2, op_rename2, OP_MODIFIES | OP_DIR_CHANGE),
    OP(FUSE_LSEEK, op_lseek, 0),
    OP(FUSE_COPY_FILE_RANGE, op_copy_file_range, OP_MODIFIES),
    OP(FUSE_SYNCFS, op_syncfs, 0),
    OP(FUSE_TMPFILE, op_tmpfile, OP_MODIFIES),
};

const struct fsb_op *fsb_op_lookup(uint32_t opcode)
{
    static const struct fsb_op unknown = { NULL, "unknown", 0 };
    if (opcode >= sizeof(ops) / sizeof(ops[0]) || !ops[opcode].fn)
        return &unknown;
    return &ops[opcode];
}
