/*
 * sandbox.c - see sandbox.h.
 *
 * The passthrough backend is the security boundary: it resolves beneath
 * the export and never follows a symlink.  The sandbox is the second wall,
 * for the day a bug lets a guest steer a system call:
 *
 * - namespace: a private mount namespace whose root is an empty, read-only
 *   tmpfs holding only /proc (the backend reopens files through
 *   /proc/self/fd), and an empty network namespace.  Exports stay reachable
 *   through the directory fds opened before; nothing else of the host's
 *   tree is.  (virtiofsd pivots into the shared directory itself; with
 *   several exports there is no one directory to pivot into.)
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
#include <string.h>
#include <sys/ioctl.h>
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

static int enter_namespace(void)
{
    if (unshare(CLONE_NEWNS | CLONE_NEWNET) < 0)
        return fail("unshare (mount and network namespaces)");
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return fail("making mounts private");
    if (mount("fsbridged", STAGING, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              "size=16k,nr_inodes=8,mode=0755") < 0)
        return fail("mounting the empty root");
    if (chdir(STAGING) < 0 || mkdir("proc", 0555) < 0)
        return fail("preparing the empty root");
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
    return 0;
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
    /* memory and threads */
    "mmap", "munmap", "mprotect", "mremap", "madvise", "brk", "clone", "clone3", "futex",
    "set_robust_list", "rseq", "set_tid_address", "exit", "exit_group", "sched_yield",
    "sched_getaffinity", "gettid", "getpid", "tgkill", "rt_sigprocmask", "rt_sigreturn",
    "rt_sigaction", "sigaltstack", "nanosleep", "clock_nanosleep", "clock_gettime",
    "gettimeofday", "restart_syscall",
    /* the transports */
    "poll", "ppoll", "eventfd2", "accept4", "accept", "recvfrom", "recvmsg", "sendmsg", "sendto",
    "shutdown", "setsockopt", "getsockopt", "getsockname", "getpeername",
    /* acting as the caller */
    "setfsuid", "setfsgid", "setgroups", "getuid", "geteuid", "getgid", "getegid", "getgroups",
    "capget",
    /* misc */
    "getrandom", "uname", "sysinfo", "prlimit64", "umask", "prctl",
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
    scmp_filter_ctx ctx = seccomp_init(default_action(mode));
    if (!ctx) {
        log_error("sandbox: seccomp_init failed");
        return -1;
    }
    int r = allow(ctx, allowed_calls, sizeof(allowed_calls) / sizeof(allowed_calls[0]));
    if (!r)
        r = allow(ctx, sanitizer_calls, sizeof(sanitizer_calls) / sizeof(sanitizer_calls[0]));
    /* ioctl: FIONREAD only (the stream server's idle check); kill: only
     * ourselves (the virtio-fs thread ends the process with SIGTERM). */
    if (!r)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
                             SCMP_A1(SCMP_CMP_EQ, FIONREAD));
    if (!r)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(kill), 1,
                             SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)getpid()));
    if (!r)
        r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
    if (!r)
        r = seccomp_load(ctx);
    seccomp_release(ctx);
    if (r < 0)
        log_error("sandbox: installing the seccomp filter: %s", strerror(-r));
    return r < 0 ? -1 : 0;
}

int sandbox_enter(enum sandbox_mode sandbox, enum seccomp_mode seccomp)
{
    bool root = geteuid() == 0;
    if (sandbox == SANDBOX_AUTO)
        sandbox = root ? SANDBOX_NAMESPACE : SANDBOX_NONE;
    if (seccomp == SECCOMP_AUTO)
        seccomp = root ? SECCOMP_ERRNO : SECCOMP_NONE;
    if (sandbox == SANDBOX_NAMESPACE && enter_namespace() < 0)
        return -1;
    if (root && sandbox != SANDBOX_NONE && drop_capabilities() < 0)
        return -1;
    if (seccomp != SECCOMP_NONE && install_seccomp(seccomp) < 0)
        return -1;
    log_debug("sandbox: %s, seccomp %s", sandbox == SANDBOX_NAMESPACE ? "namespace" : "none",
              seccomp == SECCOMP_NONE ? "off" : "on");
    return 0;
}
