/*
 * credentials.c - see credentials.h.
 *
 * setfsuid/setfsgid report no errors, only the previous id, so success is
 * checked by reading the id back (a second call with -1 changes nothing).
 */
#include "backend/passthrough/credentials.h"

#include <errno.h>
#include <linux/capability.h>
#include <sched.h>
#include <sys/stat.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Whether this thread holds lent supplementary groups. */
static __thread bool groups_lent;
/* Whether this thread's fsuid and fsgid are 0 (set by cred_leave): then a
 * caller who is root needs no switch, which saves six system calls on every
 * operation of a guest's root. */
static __thread bool at_root;

/* Whether cred_drop_fsetid() took CAP_FSETID away from this thread. */
static __thread bool fsetid_dropped;

bool cred_can_switch(void)
{
    return geteuid() == 0;
}

static long current_fsuid(void)
{
    return syscall(SYS_setfsuid, -1);
}

static long current_fsgid(void)
{
    return syscall(SYS_setfsgid, -1);
}

/* Sets this thread's fsgid, then fsuid, to CTX's.  Returns 0 or -EPERM
 * (an id the kernel refuses, e.g. (uid_t)-1 from a hostile guest), which
 * may leave the fsgid switched: the caller undoes it with cred_leave(). */
static int switch_fs_ids(const struct fsb_ctx *ctx)
{
    if (at_root && ctx->uid == 0 && ctx->gid == 0)
        return 0;
    at_root = false;
    /* The group first: changing it needs CAP_SETGID, which a non-zero
     * fsuid does not remove, but keep the order that always works. */
    syscall(SYS_setfsgid, ctx->gid);
    if ((uint32_t)current_fsgid() != ctx->gid)
        return -EPERM;
    syscall(SYS_setfsuid, ctx->uid);
    if ((uint32_t)current_fsuid() != ctx->uid)
        return -EPERM;
    return 0;
}

/* A refused switch leaves the thread exactly as cred_leave() does (the
 * daemon's ids, no lent groups, every capability back): the caller does
 * not call cred_leave() after an error, and the next request on this
 * thread must not inherit half of this one's identity. */
/*
 * The caller's umask for a creation (fsb_ctx.umask).  A umask belongs to
 * the process's fs_struct, shared by all threads, so a thread that needs
 * one unshares its own (CLONE_FS) once, at its first such creation.
 * virtiofsd does the same.  If the unshare is refused the creation fails
 * rather than make files the umask would have masked.
 *
 * The thread keeps the last creation's umask until a creation with another
 * one (cred_enter_creating): only a creation's mode is ever masked, and
 * every creation a guest asks for sets the umask first, so nothing else
 * depends on it.  Putting the daemon's 0 back after each creation cost two
 * umask() calls per file created (measured: 4,000 of the daemon's 52,000
 * system calls for 2,000 creates).  What the daemon creates for itself
 * outside a guest's creation sets its mode explicitly afterwards (the
 * overlay's copy-up: copy_owner_mode) or is made before any request runs.
 */
static __thread bool fs_unshared;
static __thread mode_t thread_umask; /* 0: the daemon's */

static int set_thread_umask(mode_t mask)
{
    if (mask == thread_umask)
        return 0;
    if (!fs_unshared) {
        if (unshare(CLONE_FS) < 0)
            return -errno;
        fs_unshared = true;
    }
    umask(mask);
    thread_umask = mask;
    return 0;
}

int cred_enter(const struct fsb_ctx *ctx, bool enabled)
{
    if (!enabled)
        return 0;
    int err = switch_fs_ids(ctx);
    /* FUSE_CREATE_SUPP_GROUP: the guest kernel vouches that the caller is
     * in the parent's group, which decides whether a new file in a
     * set-group-ID directory keeps its set-group-ID bit. */
    if (!err && ctx->has_create_gid && ctx->create_gid != ctx->gid)
        err = cred_lend_groups(&ctx->create_gid, 1);
    if (err) {
        cred_leave(true);
        return err;
    }
    /* A non-zero fsuid has no CAP_FSETID: only root needs the drop.  It
     * comes after the switch, so that a refused switch has none to undo. */
    if (ctx->kill_suidgid && ctx->uid == 0)
        cred_drop_fsetid();
    return 0;
}

int cred_enter_creating(const struct fsb_ctx *ctx, bool enabled)
{
    int err = set_thread_umask(ctx->umask & 0777);
    return err ? err : cred_enter(ctx, enabled);
}

void cred_leave(bool enabled)
{
    if (!enabled)
        return;
    if (!at_root) {
        syscall(SYS_setfsuid, 0);
        syscall(SYS_setfsgid, 0);
        at_root = true;
    }
    if (groups_lent) {
        syscall(SYS_setgroups, 0, NULL);
        groups_lent = false;
    }
    cred_restore_fsetid();
}

/* capset acts on the calling thread only (pid 0), and the effective set may
 * only shrink or grow back within the permitted set: this never gives the
 * thread a capability it did not have.  The set read before the drop is
 * what the restore puts back, so a restore costs one call. */
static __thread struct __user_cap_data_struct caps_before_drop[_LINUX_CAPABILITY_U32S_3];

static long capset_self(struct __user_cap_data_struct *data)
{
    struct __user_cap_header_struct head = { .version = _LINUX_CAPABILITY_VERSION_3 };
    return syscall(SYS_capset, &head, data);
}

void cred_drop_fsetid(void)
{
    struct __user_cap_header_struct head = { .version = _LINUX_CAPABILITY_VERSION_3 };
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    if (fsetid_dropped || syscall(SYS_capget, &head, caps_before_drop) < 0)
        return;
    if (!(caps_before_drop[0].effective & (1u << CAP_FSETID)))
        return; /* nothing to drop */
    memcpy(data, caps_before_drop, sizeof(data));
    data[0].effective &= ~(1u << CAP_FSETID);
    fsetid_dropped = capset_self(data) == 0;
}

void cred_restore_fsetid(void)
{
    if (fsetid_dropped && capset_self(caps_before_drop) == 0)
        fsetid_dropped = false;
}

/* Puts CAP in or out of this thread's effective set; true if it changed
 * (capset cannot raise what is not permitted). */
static bool set_effective(unsigned cap, bool on)
{
    struct __user_cap_header_struct head = { .version = _LINUX_CAPABILITY_VERSION_3 };
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    if (syscall(SYS_capget, &head, data) < 0)
        return false;
    uint32_t bit = 1u << (cap % 32), *eff = &data[cap / 32].effective;
    if (!!(*eff & bit) == on || (on && !(data[cap / 32].permitted & bit)))
        return false;
    *eff = on ? *eff | bit : *eff & ~bit;
    return capset_self(data) == 0;
}

bool cred_raise_admin(void)
{
    return set_effective(CAP_SYS_ADMIN, true);
}

void cred_lower_admin(bool raised)
{
    if (raised)
        set_effective(CAP_SYS_ADMIN, false);
}

/* The raw syscall changes this thread only; glibc's setgroups() would
 * change every thread of the process. */
int cred_lend_groups(const gid_t *groups, int n)
{
    if (syscall(SYS_setgroups, n, groups) < 0)
        return -errno;
    groups_lent = true;
    return 0;
}
