/*
 * sandbox.c - see sandbox.h.
 *
 * The passthrough backend is the security boundary: it resolves beneath
 * the export and never follows a symlink.  The sandbox is the second wall,
 * for the day a bug lets a guest steer a system call:
 *
 * - namespace: a private mount namespace whose root is an empty, read-only
 *   tmpfs holding only /proc (the backend reopens files through
 *   /proc/self/fd), the exports bound at /exports/N and each overlay
 *   export's UPPER and work dir under /layers/N, and an empty network
 *   namespace.  No path reaches the host's tree, not even `..`
 *   from an export.  (virtiofsd pivots into the shared directory itself;
 *   with several exports there is no one directory to pivot into.)  File
 *   handles are the exception no namespace closes: open_by_handle_at with
 *   CAP_DAC_READ_SEARCH reaches any inode of an export's filesystem, so
 *   the handles the backend opens come only from its own inode table.
 * - capabilities: only those that acting as the guest's users needs.
 * - seccomp: an allow-list.  By default a call off the list fails with
 *   ENOSYS instead of killing the daemon: a request fails, every other
 *   guest goes on (virtiofsd's kill-by-default is a known pain point).
 */
#include "fsbridged/sandbox.h"
#include "common/log.h"
#include "fsbridged/export_paths.h"

#include <cap-ng.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int parse(const char *name, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (names[i] && strcmp(name, names[i]) == 0)
            return i;
    return -1;
}

int sandbox_parse_mode(const char *name)
{
    static const char *const names[] = { "auto", "none", "namespace" };
    return parse(name, names, 3);
}

int seccomp_parse_mode(const char *name)
{
    static const char *const names[] = { "auto", "none", "errno", "log", "trap", "kill" };
    return parse(name, names, 6);
}

/* ---- the mount namespace -------------------------------------------------- */

/* The new root is built on /tmp's mount point, which every system has; in
 * the private namespace that hides nothing from anyone else. */
#define STAGING "/tmp"

static int fail(const char *what)
{
    log_error("sandbox: %s: %s", what, strerror(errno));
    return -1;
}

/*
 * Each export is bind-mounted at /exports/N of the new root, read-only
 * when the export is, and its fd is reopened there after the pivot: `..`
 * from an export root then stops in the empty root instead of walking up
 * the host's tree (the old fds point into the detached old root).
 *
 * A bind mount's source must be a mount of our own namespace, and the fds
 * opened at start-up belong to the old one: each export is opened again by
 * path in the new namespace (before the staging tmpfs may hide it) and
 * must still be the directory opened at start-up.
 */
static int reopen_in_namespace(struct fsb_export *const *exports, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        struct stat then, now;
        int fd = open(exports[i]->path, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &now) < 0 || fstat(exports[i]->root_fd, &then) < 0)
            return fail("reopening an export in the new namespace");
        if (now.st_dev != then.st_dev || now.st_ino != then.st_ino) {
            log_error("sandbox: export %s was replaced since start-up", exports[i]->path);
            close(fd);
            return -1;
        }
        close(exports[i]->root_fd);
        exports[i]->root_fd = fd;
    }
    return 0;
}

static int bind_exports(struct fsb_export *const *exports, unsigned n)
{
    if (mkdir("exports", 0555) < 0)
        return fail("preparing /exports");
    for (unsigned i = 0; i < n; i++) {
        char source[64], target[32];
        snprintf(source, sizeof(source), "/proc/self/fd/%d", exports[i]->root_fd);
        snprintf(target, sizeof(target), "exports/%u", i);
        if (mkdir(target, 0555) < 0 || mount(source, target, NULL, MS_BIND | MS_REC, NULL) < 0)
            return fail("binding an export into the empty root");
        /* An overlay's LOWER is never written: the kernel enforces it. */
        bool readonly = exports[i]->readonly || exports[i]->overlay[0];
        if (readonly && mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) < 0)
            return fail("making a read-only export's mount read-only");
    }
    return 0;
}

/*
 * An overlay export's UPPER and work dir follow the same rule, with one
 * difference: copy-up renames from the work dir's staging directory into
 * UPPER, and a rename never crosses mounts, so both must be reached
 * through one mount (overlayfs requires the same).  Their nearest common
 * directory is bound at /layers/N (writable): nothing above it is
 * reachable, but what else it holds is, so UPPER and the work dir are
 * best kept in a directory of their own (fsbridged(8)); a pair that
 * shares only "/" is refused.
 */
struct layer_bind {
    int fd;                 /* the common directory, opened in the new namespace */
    size_t common_len;      /* its length in the paths below */
    char upper[PATH_MAX], work[PATH_MAX]; /* canonical */
};

static int open_layer_bind(const struct fsb_export *e, struct layer_bind *b)
{
    char common[PATH_MAX];
    if (export_path_canonical(e->overlay, b->upper) < 0 ||
        export_path_canonical(e->overlay_work, b->work) < 0)
        return fail("resolving an overlay's upper and work dirs");
    export_path_common(b->upper, b->work, common);
    if (strcmp(common, "/") == 0) {
        log_error("sandbox: export %s: upper %s and work dir %s share no directory but /, "
                  "which the sandbox would have to bind whole: put both in one directory",
                  e->name, b->upper, b->work);
        return -1;
    }
    b->common_len = strlen(common);
    b->fd = open(common, O_PATH | O_DIRECTORY | O_CLOEXEC);
    return b->fd < 0 ? fail("opening an overlay's layers in the new namespace") : 0;
}

/* The layer binds of the overlay exports (fd -1 for the others). */
static struct layer_bind *open_layer_binds(struct fsb_export *const *exports, unsigned n)
{
    struct layer_bind *binds = calloc(n ? n : 1, sizeof(*binds));
    if (!binds) {
        fail("allocating the layer binds");
        return NULL;
    }
    for (unsigned i = 0; i < n; i++)
        binds[i].fd = -1;
    for (unsigned i = 0; i < n; i++)
        if (exports[i]->overlay[0] && open_layer_bind(exports[i], &binds[i]) < 0) {
            free(binds);
            return NULL;
        }
    return binds;
}

static int bind_layers(const struct layer_bind *binds, unsigned n)
{
    bool made = false; /* /layers only with an overlay export */
    for (unsigned i = 0; i < n; i++) {
        if (binds[i].fd < 0)
            continue;
        if (!made && mkdir("layers", 0555) < 0)
            return fail("preparing /layers");
        made = true;
        char source[64], target[32];
        snprintf(source, sizeof(source), "/proc/self/fd/%d", binds[i].fd);
        snprintf(target, sizeof(target), "layers/%u", i);
        if (mkdir(target, 0555) < 0 || mount(source, target, NULL, MS_BIND | MS_REC, NULL) < 0)
            return fail("binding an overlay's layers into the empty root");
    }
    return 0;
}

/* Replaces *FD by /layers/I/REL (+ SUFFIX), which must be the same
 * directory. */
static int reopen_layer(unsigned i, const char *rel, const char *suffix, int *fd)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "/layers/%u%s%s", i, rel, suffix);
    struct stat then, now;
    int nfd = open(path, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (nfd < 0 || fstat(nfd, &now) < 0 || fstat(*fd, &then) < 0 ||
        now.st_dev != then.st_dev || now.st_ino != then.st_ino) {
        log_error("sandbox: %s is not the overlay directory opened at start-up", path);
        if (nfd >= 0)
            close(nfd);
        return -1;
    }
    close(*fd);
    *fd = nfd;
    return 0;
}

static int reopen_layers(struct fsb_export *const *exports, const struct layer_bind *binds,
                         unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        const struct layer_bind *b = &binds[i];
        struct overlay_dirs *d = &exports[i]->overlay_dirs;
        if (b->fd >= 0 && (reopen_layer(i, b->upper + b->common_len, "", &d->upper_fd) < 0 ||
                           reopen_layer(i, b->work + b->common_len, "/staging", &d->work_fd) < 0))
            return -1;
    }
    return 0;
}

static void close_layer_binds(struct layer_bind *binds, unsigned n)
{
    for (unsigned i = 0; binds && i < n; i++)
        if (binds[i].fd >= 0)
            close(binds[i].fd);
    free(binds);
}

static int reopen_in_root(struct fsb_export *const *exports, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        char path[32];
        snprintf(path, sizeof(path), "/exports/%u", i);
        int fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
            return fail("reopening an export in the empty root");
        close(exports[i]->root_fd);
        exports[i]->root_fd = fd;
    }
    return 0;
}

/*
 * Our copies of the mounts must stop propagating before we mount anything,
 * or the empty root would appear in the host's namespace too.  That needs
 * "/" to be the root of a mount.  Inside a chroot whose directory is not a
 * mount point it is not (EINVAL), and nothing can be done safely from in
 * here: the mount holding "/" cannot be named, and any mount made on it
 * (binding the root onto itself included) reaches the host's namespace
 * when that mount is shared, as it is under systemd.  So say what to do
 * instead: one (recursive) bind mount of the directory onto itself
 * before chroot.
 */
static int make_mounts_private(void)
{
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0)
        return 0;
    if (errno != EINVAL)
        return fail("making mounts private");
    log_error("sandbox: / is not a mount point (a chroot?), so the sandbox cannot be built "
              "without touching the host's mounts: make the directory one before chroot "
              "(mount --rbind DIR DIR), or run with --sandbox none");
    return -1;
}

/* The new root on STAGING: /proc, the exports, the overlays' layers. */
static int build_root(struct fsb_export *const *exports, const struct layer_bind *binds,
                      unsigned n)
{
    if (mount("fsbridged", STAGING, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              "size=16k,mode=0755") < 0)
        return fail("mounting the empty root on " STAGING);
    if (chdir(STAGING) < 0 || mkdir("proc", 0555) < 0)
        return fail("preparing the empty root");
    if (bind_exports(exports, n) < 0 || bind_layers(binds, n) < 0)
        return -1;
    if (mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        return fail("mounting /proc");
    return 0;
}

/* pivot_root(".", "."): the old root ends up on top, then goes. */
static int pivot_into_root(struct fsb_export *const *exports, const struct layer_bind *binds,
                           unsigned n)
{
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        return fail("pivot_root");
    if (umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
        return fail("detaching the old root");
    if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
              NULL) < 0)
        return fail("making the root read-only");
    return reopen_in_root(exports, n) < 0 ? -1 : reopen_layers(exports, binds, n);
}

static int enter_namespace(struct fsb_export *const *exports, unsigned n)
{
    if (unshare(CLONE_NEWNS | CLONE_NEWNET) < 0)
        return fail("unshare (mount and network namespaces)");
    if (make_mounts_private() < 0)
        return -1;
    if (reopen_in_namespace(exports, n) < 0)
        return -1;
    struct layer_bind *binds = open_layer_binds(exports, n);
    int r = binds ? build_root(exports, binds, n) : -1;
    if (r == 0)
        r = pivot_into_root(exports, binds, n);
    close_layer_binds(binds, n);
    return r;
}

/* ---- capabilities --------------------------------------------------------- */

/* Acting as the guest's users: chown and mode bits of others' files (for
 * a guest root), permission checks as the caller (setfsuid/setfsgid and
 * lent groups), opening inodes from file handles, device nodes.  An
 * overlay export also needs CAP_SYS_ADMIN, for overlayfs's trusted.overlay.*
 * xattrs: it stays permitted but not effective, and the overlay raises it
 * in one thread around its own metadata calls only (credentials.h), so
 * that no guest reads or sets trusted.* with it on any export.  Threads
 * start after this, with these sets.  (Nothing else of CAP_SYS_ADMIN:
 * mount, setns and the like stay out of reach of the seccomp filter.) */
static int drop_capabilities(bool trusted_xattrs)
{
    capng_clear(CAPNG_SELECT_BOTH);
    if (capng_updatev(CAPNG_ADD, CAPNG_EFFECTIVE | CAPNG_PERMITTED, CAP_CHOWN, CAP_DAC_OVERRIDE,
                      CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_FSETID, CAP_SETUID, CAP_SETGID,
                      CAP_MKNOD, -1) < 0 ||
        (trusted_xattrs && capng_update(CAPNG_ADD, CAPNG_PERMITTED, CAP_SYS_ADMIN) < 0) ||
        capng_apply(CAPNG_SELECT_BOTH) < 0) {
        log_error("sandbox: dropping capabilities failed");
        return -1;
    }
    return 0;
}

/* ---- seccomp -------------------------------------------------------------- */

static const char *const allowed_calls[] = {
    /* files, through the fds the backend holds */
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2",
    "pwritev2", "close", "close_range", "openat", "openat2", "open_by_handle_at",
    "name_to_handle_at", "newfstatat", "fstat", "statx", "lseek", "getdents64", "fsync",
    "fdatasync", "syncfs", "fallocate", "ftruncate", "fchmod", "fchmodat", "fchown", "fchownat",
    "utimensat", "mkdirat", "mknodat", "symlinkat", "linkat", "unlinkat", "renameat2",
    "readlinkat", "fgetxattr", "fsetxattr", "flistxattr", "fremovexattr", "getxattr",
    "lgetxattr", "setxattr", "lsetxattr", "listxattr", "llistxattr", "removexattr",
    "lremovexattr", "fstatfs", "statfs", "flock", "fcntl", "copy_file_range", "dup", "dup3",
    "faccessat", "faccessat2",
    /* READ data: file -> pipe -> socket (transport/read_pipes.h) */
    "splice",
    /* cache=coherent's change watcher (change_watch.c): its fanotify or
     * inotify fd is opened before the sandbox; inotify mode adds a watch
     * for each directory a guest looks up */
    "inotify_add_watch",
    /* memory and threads */
    "mmap", "munmap", "mprotect", "mremap", "madvise", "brk", "futex",
    "set_robust_list", "rseq", "set_tid_address", "exit", "exit_group", "sched_yield",
    "sched_getaffinity", "gettid", "getpid", "rt_sigprocmask", "rt_sigreturn",
    "rt_sigaction", "sigaltstack", "nanosleep", "clock_nanosleep", "clock_gettime",
    "gettimeofday", "restart_syscall",
    /* the transports */
    "poll", "ppoll", "eventfd2", "accept4", "accept", "recvfrom", "recvmsg", "sendmsg", "sendto",
    "shutdown", "setsockopt", "getsockopt", "getsockname", "getpeername",
    /* acting as the caller */
    "setfsuid", "setfsgid", "setgroups", "getuid", "geteuid", "getgid", "getegid", "getgroups",
    "capget",
    /* capset: a writer without CAP_FSETID is served with it dropped from the
     * thread's effective set (credentials.h); capset can never raise a
     * capability beyond the permitted set, which is already cut down. */
    "capset",
    /* misc */
    "getrandom", "uname", "sysinfo", "umask", "prctl",
};

/* Sanitizer builds (the tests) check for leaks at exit by stopping the
 * threads with ptrace; release builds never need it. */
#if defined(__SANITIZE_ADDRESS__)
static const char *const sanitizer_calls[] = { "ptrace", "wait4", "readlink", "mincore", "getdents",
                                               "sched_getparam", "getppid", "open", "stat" };
#else
static const char *const sanitizer_calls[] = { NULL };
#endif

static int allow(scmp_filter_ctx ctx, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!names[i])
            continue;
        int nr = seccomp_syscall_resolve_name(names[i]);
        if (nr == __NR_SCMP_ERROR)
            continue; /* not on this architecture */
        if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0) < 0) {
            log_error("sandbox: seccomp rule for %s failed", names[i]);
            return -1;
        }
    }
    return 0;
}

/* Calls allowed for some arguments only: there is no PID namespace, so a
 * signal or a limit could reach other processes of the same uid. */
static int allow_with_arguments(scmp_filter_ctx ctx, uint32_t default_act)
{
    const scmp_datum_t self = (scmp_datum_t)getpid();
    /* Threads (glibc tries clone3 first: ENOSYS sends it to clone, whose
     * flags can be checked), never a new namespace. */
    const scmp_datum_t namespaces = CLONE_NEWNS | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET |
                                    CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP;
    int r = 0;
    if (default_act != SCMP_ACT_ERRNO(ENOSYS)) /* libseccomp refuses a rule equal to it */
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
    if (!r)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
                             SCMP_A0(SCMP_CMP_MASKED_EQ, namespaces, 0));
    /* Signals to ourselves only: the virtio-fs thread ends the process
     * with SIGTERM, abort() raises SIGABRT. */
    if (!r)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(kill), 1, SCMP_A0(SCMP_CMP_EQ, self));
    if (!r)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1, SCMP_A0(SCMP_CMP_EQ, self));
    /* A thread's own fs_struct, for a guest caller's umask (credentials.c),
     * never a namespace. */
    if (!r)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(unshare), 1,
                             SCMP_A0(SCMP_CMP_EQ, CLONE_FS));
    /* The calling thread's CPUs (0) only: a reader follows its client's
     * CPU hint (stream_server.c). */
    if (!r)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(sched_setaffinity), 1,
                             SCMP_A0(SCMP_CMP_EQ, 0));
    /* Our own limits (pid 0) only. */
    if (!r)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prlimit64), 1, SCMP_A0(SCMP_CMP_EQ, 0));
    /* Reading a directory's flags (whether it is casefolded, see
     * passthrough_dirs.c), never setting them or any other ioctl. */
    if (!r)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
                             SCMP_A1(SCMP_CMP_EQ, FS_IOC_GETFLAGS));
    return r;
}

static uint32_t default_action(enum seccomp_mode mode)
{
    switch (mode) {
    case SECCOMP_LOG: return SCMP_ACT_LOG;
    case SECCOMP_TRAP: return SCMP_ACT_TRAP;
    case SECCOMP_KILL: return SCMP_ACT_KILL_PROCESS;
    default: return SCMP_ACT_ERRNO(ENOSYS);
    }
}

static int install_seccomp(enum seccomp_mode mode)
{
    uint32_t default_act = default_action(mode);
    scmp_filter_ctx ctx = seccomp_init(default_act);
    if (!ctx) {
        log_error("sandbox: seccomp_init failed");
        return -1;
    }
    int r = allow(ctx, allowed_calls, sizeof(allowed_calls) / sizeof(allowed_calls[0]));
    if (!r)
        r = allow(ctx, sanitizer_calls, sizeof(sanitizer_calls) / sizeof(sanitizer_calls[0]));
    if (!r)
        r = allow_with_arguments(ctx, default_act);
    if (!r)
        r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
    if (!r)
        r = seccomp_load(ctx);
    seccomp_release(ctx);
    if (r < 0)
        log_error("sandbox: installing the seccomp filter: %s", strerror(-r));
    return r < 0 ? -1 : 0;
}

int sandbox_enter(enum sandbox_mode sandbox, enum seccomp_mode seccomp,
                  struct fsb_export *const *exports, unsigned nexports)
{
    bool root = geteuid() == 0;
    if (sandbox == SANDBOX_AUTO)
        sandbox = root ? SANDBOX_NAMESPACE : SANDBOX_NONE;
    if (seccomp == SECCOMP_AUTO)
        seccomp = root ? SECCOMP_ERRNO : SECCOMP_NONE;
    if (sandbox == SANDBOX_NAMESPACE && enter_namespace(exports, nexports) < 0)
        return -1;
    bool overlay = false;
    for (unsigned i = 0; i < nexports; i++)
        overlay |= exports[i]->overlay[0] != 0;
    if (root && sandbox != SANDBOX_NONE && drop_capabilities(overlay) < 0)
        return -1;
    if (seccomp != SECCOMP_NONE && install_seccomp(seccomp) < 0)
        return -1;
    log_debug("sandbox: %s, seccomp %s", sandbox == SANDBOX_NAMESPACE ? "namespace" : "none",
              seccomp == SECCOMP_NONE ? "off" : "on");
    return sandbox == SANDBOX_NAMESPACE;
}
