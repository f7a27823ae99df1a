/*
 * sandbox.c - see sandbox.h.
 *
 * The passthrough backend is the security boundary: it resolves beneath
 * the export and never follows a symlink.  The sandbox is the second wall,
 * for the day a bug lets a guest steer a system call:
 *
 * - namespace: a private mount namespace whose root is an empty, read-only
 *   tmpfs holding only /proc (the backend reopens files through
 *   /proc/self/fd) and the exports bound at /exports/N, and an empty
 *   network namespace.  No path reaches the host's tree, not even `..`
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

#include <cap-ng.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
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
        if (exports[i]->readonly &&
            mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) < 0)
            return fail("making a read-only export's mount read-only");
    }
    return 0;
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

static int enter_namespace(struct fsb_export *const *exports, unsigned n)
{
    if (unshare(CLONE_NEWNS | CLONE_NEWNET) < 0)
        return fail("unshare (mount and network namespaces)");
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return fail("making mounts private");
    if (reopen_in_namespace(exports, n) < 0)
        return -1;
    if (mount("fsbridged", STAGING, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              "size=16k,mode=0755") < 0)
        return fail("mounting the empty root");
    if (chdir(STAGING) < 0 || mkdir("proc", 0555) < 0)
        return fail("preparing the empty root");
    if (bind_exports(exports, n) < 0)
        return -1;
    if (mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        return fail("mounting /proc");
    /* pivot_root(".", "."): the old root ends up on top, then goes. */
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        return fail("pivot_root");
    if (umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
        return fail("detaching the old root");
    if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
              NULL) < 0)
        return fail("making the root read-only");
    return reopen_in_root(exports, n);
}

/* ---- capabilities --------------------------------------------------------- */

/* Acting as the guest's users: chown and mode bits of others' files (for
 * a guest root), permission checks as the caller (setfsuid/setfsgid and
 * lent groups), opening inodes from file handles, device nodes. */
static int drop_capabilities(void)
{
    capng_clear(CAPNG_SELECT_BOTH);
    if (capng_updatev(CAPNG_ADD, CAPNG_EFFECTIVE | CAPNG_PERMITTED, CAP_CHOWN, CAP_DAC_OVERRIDE,
                      CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_FSETID, CAP_SETUID, CAP_SETGID,
                      CAP_MKNOD, -1) < 0 ||
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
    /* Our own limits (pid 0) only. */
    if (!r)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prlimit64), 1, SCMP_A0(SCMP_CMP_EQ, 0));
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
    if (root && sandbox != SANDBOX_NONE && drop_capabilities() < 0)
        return -1;
    if (seccomp != SECCOMP_NONE && install_seccomp(seccomp) < 0)
        return -1;
    log_debug("sandbox: %s, seccomp %s", sandbox == SANDBOX_NAMESPACE ? "namespace" : "none",
              seccomp == SECCOMP_NONE ? "off" : "on");
    return 0;
}
