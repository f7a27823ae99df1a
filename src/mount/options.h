/*
 * options.h - the command line of fsbridge-mount, and of mount.fsbridge
 * (the same program under the name mount(8) runs for `mount -t fsbridge`).
 *
 *   fsbridge-mount [-f] [-d] [-o OPTS] [--protocol=native] [ADDRESS] MOUNTPOINT
 *   mount.fsbridge ADDRESS MOUNTPOINT [-sfnv] [-o OPTS]
 *   mount.fuse.fsbridge ADDRESS MOUNTPOINT -o remount,OPTS   (from mount(8))
 *
 * -o takes comma-separated options.  export=, threads=,
 * (no_)default_permissions, protocol= (as --protocol), the relay's queues=,
 * uring=, poll_us= and host_events=, and with --protocol=matchlock connections= and
 * prefix=, are fsbridge-mount's own;
 * mount(8)/fstab-only
 * options (defaults, noauto, _netdev, x-*, ...) are dropped; the rest go to
 * libfuse's mount unchanged, which refuses what it does not know.
 */
#ifndef FSB_MOUNT_OPTIONS_H
#define FSB_MOUNT_OPTIONS_H

#include <limits.h>
#include <stdbool.h>

#include "common/address.h"
#include "mount/relay.h"
#include "transport/stream_hello.h"

#define MOUNT_DEFAULT_ADDRESS "vsock:2:5001"
/* matchlock mode: most connections to the host (requests in flight). */
#define MOUNT_DEFAULT_CONNECTIONS 4
#define MOUNT_MAX_CONNECTIONS 64
/* matchlock mode: /dev/fuse worker threads. */
#define MOUNT_DEFAULT_THREADS 4

enum mount_protocol {
    MOUNT_PROTOCOL_NATIVE,    /* fsbridged's stream protocol: the FUSE relay */
    MOUNT_PROTOCOL_MATCHLOCK, /* a matchlock host's CBOR path protocol */
};

struct mount_options {
    struct fsb_address addr;     /* addr.text: the address as given */
    const char *mountpoint;      /* as given */
    char export_name[FSB_EXPORT_NAME_MAX + 1]; /* "" = the host's default */
    unsigned threads;            /* matchlock: /dev/fuse worker threads */
    unsigned queues;             /* native: relay queues (0: one per CPU) */
    unsigned poll_us;            /* native: reply spin limit, 0 = sleep at once */
    enum relay_uring uring;      /* native: io_uring queues */
    bool flush_by_host;          /* native: flush=host, no FLUSH shortcut */
    bool dir_attrs_by_host;      /* native: dir_attrs=host, no attribute notes */
    bool caps_by_host;           /* native: caps=host, no caps shortcut */
    bool lookups_by_host;        /* native: lookups=host, no missing names */
    enum relay_open open_mode;   /* native: open= */
    bool host_events;            /* native: echo host changes (host_events.h) */
    bool threads_set, relay_set; /* threads= given; poll_us= or a choice option of the relay (options.c) given */
    unsigned connections;        /* matchlock: most host connections */
    char prefix[PATH_MAX];       /* matchlock: guest path prefix, "" = the mountpoint */
    bool default_permissions;    /* let the guest kernel check modes too */
    bool foreground;
    bool debug;
    bool fake;                   /* mount.fsbridge -f: check arguments only */
    bool remount;                /* -o remount: fuse_opts names the new flags */
    enum mount_protocol protocol;
    char *fuse_opts;             /* options for libfuse's mount, or NULL */
};

/* What mount_options_parse() tells the caller to do. */
enum mount_parse_result {
    MOUNT_PARSE_RUN,   /* options are valid: go on */
    MOUNT_PARSE_EXIT,  /* --help or --version was printed: exit 0 */
    MOUNT_PARSE_ERROR, /* a one-line error was logged: exit 1 */
};

enum mount_parse_result mount_options_parse(int argc, char **argv, struct mount_options *o);

#endif
