/*
 * virtio_fs.h - the virtio-fs device (device id 26) on top of vhost-user:
 * each virtqueue request is one FUSE request for the engine, the reply goes
 * into the request's writable descriptors.  Zero copy: READ and WRITE
 * payloads move between the host file and guest memory directly, because
 * the engine gets the descriptors' guest memory as its iovecs.
 */
#ifndef FSB_VIRTIO_FS_H
#define FSB_VIRTIO_FS_H

#include "engine/session.h"

struct virtio_fs_config {
    const struct fsb_export *export;
    /* Requests that arrive together run on a pool of this many threads,
     * a lone one on its queue's thread; 0: every request on its queue's
     * thread.  Lock waits (SETLKW) get threads of their own either way. */
    unsigned thread_pool_size;
    unsigned poll_us; /* see vu_device_ops.poll_us */
    /* One frontend is one guest: its sessions' open files and inodes count
     * on this budget (may be NULL).  Threads and queued requests are
     * bounded per device already (the pool, 128 popped requests a queue,
     * 64 lock waits). */
    struct fsb_guest *guest;
};

/* Serves the frontend on CONN_FD until it disconnects or STOP_FD is
 * readable.  Returns 0, or -errno when the frontend broke the protocol. */
int virtio_fs_serve(int conn_fd, const struct virtio_fs_config *cfg, int stop_fd);

#endif
