/*
 * sandbox.h - what is left to fsbridged once it serves guests: no view of
 * the host's file tree beyond the exports it already holds open, a short
 * list of system calls, and only the capabilities that acting as the
 * guest's users needs.  Entered after every export, listening socket and
 * log connection is open, before the first thread starts.
 */
#ifndef FSB_SANDBOX_H
#define FSB_SANDBOX_H

#include "engine/session.h"

enum sandbox_mode {
    SANDBOX_AUTO,       /* namespace as root, none otherwise */
    SANDBOX_NONE,
    SANDBOX_NAMESPACE,  /* private mount + network namespace, empty root */
};

enum seccomp_mode {
    SECCOMP_AUTO,       /* errno as root, none otherwise */
    SECCOMP_NONE,
    SECCOMP_ERRNO,      /* a call off the list fails with ENOSYS */
    SECCOMP_LOG,        /* ... is allowed and logged by the kernel */
    SECCOMP_TRAP,       /* ... raises SIGSYS */
    SECCOMP_KILL,       /* ... kills the daemon */
};

/* Parse virtiofsd's names (and ours); -1 when unknown. */
int sandbox_parse_mode(const char *name);
int seccomp_parse_mode(const char *name);

/* Enters the sandbox; returns 1 inside a private mount namespace (no mount
 * made on the host appears in it any more), 0 without one, or -1 after
 * logging what failed.  The exports' root fds are replaced by fds of the
 * same directories inside it. */
int sandbox_enter(enum sandbox_mode sandbox, enum seccomp_mode seccomp,
                  struct fsb_export *const *exports, unsigned nexports);

#endif
