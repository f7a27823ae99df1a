/*
 * options.h - fsbridged's command line.
 */
#ifndef FSB_OPTIONS_H
#define FSB_OPTIONS_H

#include "common/address.h"
#include "common/id_set.h"
#include "common/budget.h"
#include "engine/session.h"
#include "fsbridged/vhost_options.h"
#include "transport/peer_rules.h"

#define MAX_EXPORTS 64
#define MAX_LISTENERS 16

struct options {
    struct fsb_export exports[MAX_EXPORTS];
    unsigned nexports;
    struct fsb_address listen[MAX_LISTENERS];
    struct fsb_listener_rules listen_rules[MAX_LISTENERS]; /* ,exports= ,cid= */
    char *listen_exports[MAX_LISTENERS]; /* exports= as given, ':'-joined; NULL: all */
    unsigned nlisten;
    unsigned max_workers;
    unsigned max_sessions;
    /* Per guest (common/budget.h).  max[FSB_BUDGET_OPEN] is 0 until set:
     * then main derives it from the fd pool (options_default_open). */
    struct fsb_budget_limits guest_limits;
    bool syslog;
    struct fsb_socket_access socket_access; /* --socket-mode, --socket-group */
    bool socket_mode_given;
    struct fsb_id_set allow_uids;           /* --allow-uid; empty: any uid */
    bool follow_cpu_hints;                  /* --cpu-hints follow */
    struct vhost_options vhost; /* virtio-fs: --socket-path/--fd */
};

/* Parses argv.  Returns 0 to run, 1 when --help/--version was answered,
 * or -1 after printing one line about what is wrong. */
int options_parse(int argc, char **argv, struct options *o);

/* The guests' fd pool shared by 100 guests, as the default of
 * --guest-max-open: each may hold its whole budget at once. */
size_t options_default_open(size_t pool);

#endif
