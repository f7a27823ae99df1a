/*
 * vhost_run.h - fsbridged's virtio-fs side as virtiofsd runs it: one
 * listening socket (--socket-path or --fd), one frontend, then the end.
 */
#ifndef FSB_VHOST_RUN_H
#define FSB_VHOST_RUN_H

#include "common/address.h"
#include "fsbridged/vhost_options.h"

#include <stdbool.h>

struct vhost_run {
    const struct vhost_options *v;
    int sock;                   /* listening, or already the frontend */
    bool listening;
    struct fsb_socket_file file; /* --socket-path's file, removed at accept */
    int stop_fd;                /* readable: stop */
    bool end_process;           /* raise SIGTERM when the frontend goes */
    int result;                 /* 0, or -errno: the frontend broke the protocol */
};

/* Opens the socket (before the sandbox hides the path); -1 after saying
 * why. */
int vhost_run_open(struct vhost_run *run, const struct vhost_options *v);

/* Waits for the frontend and serves it until it disconnects or STOP_FD
 * fires; a pthread start routine.  Sets run->result. */
void *vhost_run_main(void *run);

#endif
