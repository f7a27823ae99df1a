/*
 * credentials.c - see credentials.h.
 *
 * setfsuid/setfsgid report no errors, only the previous id, so success is
 * checked by reading the id back (a second call with -1 changes nothing).
 */
#include "backend/passthrough/credentials.h"

#include <errno.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Whether this thread holds lent supplementary groups. */
static __thread bool groups_lent;
/* Whether this thread's fsuid and fsgid are 0 (set by cred_leave): then a
 * caller who is root needs no switch, which saves six system calls on every
 * operation of a guest's root. */
static __thread bool at_root;

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

int cred_enter(const struct fsb_ctx *ctx, bool enabled)
{
    if (!enabled || (at_root && ctx->uid == 0 && ctx->gid == 0))
        return 0;
    at_root = false;
    /* The group first: changing it needs CAP_SETGID, which a non-zero
     * fsuid does not remove, but keep the order that always works. */
    syscall(SYS_setfsgid, ctx->gid);
    if ((uint32_t)current_fsgid() != ctx->gid)
        return -EPERM;
    syscall(SYS_setfsuid, ctx->uid);
    if ((uint32_t)current_fsuid() != ctx->uid) {
        syscall(SYS_setfsgid, 0);
        return -EPERM;
    }
    return 0;
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
