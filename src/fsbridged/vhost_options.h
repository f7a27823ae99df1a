/*
 * vhost_options.h - fsbridged's virtiofsd-compatible options: what libvirt,
 * QEMU users and Kata pass to a vhost-user-fs backend.
 */
#ifndef FSB_VHOST_OPTIONS_H
#define FSB_VHOST_OPTIONS_H

#include "engine/session.h"
#include "fsbridged/sandbox.h"

#include <stdbool.h>

/* --poll-us: the default is measured (bench/README.md, "Hybrid polling"). */
#define FSB_DEFAULT_POLL_US 0
#define FSB_MAX_POLL_US 1000

struct vhost_options {
    bool wanted;                  /* --socket-path or --fd given */
    char socket_path[108];
    int fd;                       /* --fd, or -1 */
    struct fsb_export export;     /* --shared-dir and its cache/xattr/... options */
    bool have_shared_dir;
    unsigned thread_pool_size;
    /* Process-wide: how long a waiting reader (stream connection, virtqueue)
     * spins before it sleeps, at most (common/halt_poll.h); 0: never. */
    unsigned poll_us;
    /* Process-wide (streams too), but set by virtiofsd's options. */
    enum sandbox_mode sandbox;
    enum seccomp_mode seccomp;
};

/* The getopt_long codes of these options (options.c lists them). */
enum {
    VOPT_SOCKET_PATH = 512, VOPT_FD, VOPT_SHARED_DIR, VOPT_CACHE, VOPT_READONLY, VOPT_XATTR,
    VOPT_NO_XATTR, VOPT_WRITEBACK, VOPT_SANDBOX, VOPT_SECCOMP, VOPT_THREAD_POOL_SIZE,
    VOPT_PRINT_CAPABILITIES, VOPT_LOG_LEVEL, VOPT_OVERLAY_DIR, VOPT_POLL_US, VOPT_XATTR_MAP, VOPT_LEGACY_O = 'o',
    VOPT_FOREGROUND = 'f',
    VOPT_DEBUG = 'd',
};

void vhost_options_init(struct vhost_options *v);

/* Applies one option.  Returns 0, 1 when it was answered
 * (--print-capabilities), or -1 after printing what is wrong. */
int vhost_option(struct vhost_options *v, int code, const char *arg);

/* Checks the options together; -1 after printing what is wrong. */
int vhost_options_finish(struct vhost_options *v);

#endif
