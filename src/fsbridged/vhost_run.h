/*
 * vhost_run.h - fsbridged's virtio-fs side as virtiofsd runs it: one
 * listening socket (--socket-path or --fd), one frontend, then the end.
 */
#ifndef FSB_VHOST_RUN_H
#define FSB_VHOST_RUN_H

#include "common/address.h"
#include "common/id_set.h"
#include "common/budget.h"
#include "fsbridged/vhost_options.h"

#include <stdbool.h>

struct vhost_run {
    const struct vhost_options *v;
    const struct fsb_id_set *allow_uids; /* --allow-uid */
    int sock;                   /* listening, or already the frontend */
    bool listening;
    struct fsb_socket_file file; /* --socket-path's file, removed at accept */
    int stop_fd;                /* readable: stop */
    bool end_process;           /* raise SIGTERM when the frontend goes */
    int result;                 /* 0, or -errno: the frontend broke the protocol */
    const struct fsb_budget_limits *guest_limits; /* the frontend's budgets */
};

/* Opens the socket (before the sandbox hides the path) with ACCESS; a
 * frontend whose uid is not in ALLOW_UIDS (when not empty) is refused.
 * -1 after saying why. */
int vhost_run_open(struct vhost_run *run, const struct vhost_options *v,
                   const struct fsb_socket_access *access, const struct fsb_id_set *allow_uids);

/* Waits for the frontend and serves it until it disconnects or STOP_FD
 * fires; a pthread start routine.  Sets run->result. */
void *vhost_run_main(void *run);

#endif
