/*
 * options.h - fsbridged's command line.
 */
#ifndef FSB_OPTIONS_H
#define FSB_OPTIONS_H

#include "common/address.h"
#include "engine/session.h"
#include "fsbridged/vhost_options.h"

#define MAX_EXPORTS 64
#define MAX_LISTENERS 16

struct options {
    struct fsb_export exports[MAX_EXPORTS];
    unsigned nexports;
    struct fsb_address listen[MAX_LISTENERS];
    unsigned nlisten;
    unsigned max_workers;
    unsigned max_sessions;
    unsigned max_sessions_per_peer;
    bool syslog;
    struct vhost_options vhost; /* virtio-fs: --socket-path/--fd */
};

/* Parses argv.  Returns 0 to run, 1 when --help/--version was answered,
 * or -1 after printing one line about what is wrong. */
int options_parse(int argc, char **argv, struct options *o);

#endif
