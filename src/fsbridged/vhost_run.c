/*
 * vhost_run.c - see vhost_run.h.
 */
#include "fsbridged/vhost_run.h"
#include "common/log.h"
#include "transport/peer_rules.h"
#include "transport/vhost/virtio_fs.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* libvirt passes a listening socket with --fd; a connected one is used as
 * it is. */
static int inherited_socket(int fd, bool *listening)
{
    int on = 0;
    socklen_t len = sizeof(on);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) < 0) {
        log_error("--fd %d: not a socket: %s", fd, strerror(errno));
        return -1;
    }
    *listening = on;
    return fd;
}

int vhost_run_open(struct vhost_run *run, const struct vhost_options *v,
                   const struct fsb_socket_access *access, const struct fsb_id_set *allow_uids)
{
    *run = (struct vhost_run){ .v = v, .allow_uids = allow_uids, .listening = true,
                               .file = { .dirfd = -1 } };
    if (v->fd >= 0) {
        run->sock = inherited_socket(v->fd, &run->listening);
        return run->sock < 0 ? -1 : 0;
    }
    struct fsb_address a = { .kind = FSB_ADDR_UNIX, .text = v->socket_path };
    strcpy(a.path, v->socket_path);
    run->sock = fsb_address_listen(&a, access);
    if (run->sock < 0) {
        log_error("--socket-path %s: %s", v->socket_path, strerror(-run->sock));
        return -1;
    }
    int err = fsb_socket_file_open(v->socket_path, &run->file);
    if (err)
        log_warn("--socket-path %s: its directory: %s (the socket file will stay)",
                 v->socket_path, strerror(-err));
    return 0;
}

/* --allow-uid: a frontend of another uid is closed, and the socket
 * waits on for the right one. */
static bool frontend_allowed(const struct vhost_run *run, int fd, const struct sockaddr *sa)
{
    struct fsb_peer peer = { 0 };
    struct fsb_listener_rules rules = { .uids = run->allow_uids };
    const char *why = "its credentials are unknown";
    if (fsb_peer_of(fd, sa, &peer) == 0 && fsb_peer_may_connect(&rules, &peer, &why))
        return true;
    log_warn("virtio-fs: refusing a frontend (uid %u): %s", (unsigned)peer.uid, why);
    return false;
}

/* Waits for the frontend; -1 when STOP_FD fired first. */
static int accept_frontend(const struct vhost_run *run)
{
    struct pollfd pfd[2] = { { .fd = run->sock, .events = POLLIN },
                             { .fd = run->stop_fd, .events = POLLIN } };
    for (;;) {
        if (poll(pfd, 2, -1) < 0 && errno != EINTR)
            return -1;
        if (pfd[1].revents)
            return -1;
        if (!pfd[0].revents)
            continue;
        struct sockaddr_storage sa;
        socklen_t len = sizeof(sa);
        int fd = accept4(run->sock, (struct sockaddr *)&sa, &len, SOCK_CLOEXEC);
        if (fd >= 0 && frontend_allowed(run, fd, (struct sockaddr *)&sa))
            return fd;
        if (fd >= 0)
            close(fd);
        else if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED)
            return -1;
    }
}

/* One frontend, virtiofsd-style: once it is there the socket stops
 * listening and its file goes away. */
void *vhost_run_main(void *arg)
{
    struct vhost_run *run = arg;
    log_info("virtio-fs: sharing %s, waiting for the vhost-user frontend", run->v->export.path);
    int conn = run->listening ? accept_frontend(run) : run->sock;
    if (run->listening)
        close(run->sock);
    fsb_socket_file_remove(&run->file);
    run->result = 0;
    if (conn >= 0) {
        log_info("virtio-fs: frontend connected");
        struct fsb_guest guest;
        fsb_guest_init(&guest, "virtio-fs frontend", run->guest_limits);
        struct virtio_fs_config cfg = { .export = &run->v->export,
                                        .thread_pool_size = run->v->thread_pool_size,
                                        .poll_us = run->v->poll_us,
                                        .guest = &guest };
        run->result = virtio_fs_serve(conn, &cfg, run->stop_fd);
        fsb_guest_destroy(&guest);
        log_info("virtio-fs: frontend %s", run->result ? "broke the protocol" : "disconnected");
    }
    if (run->end_process)
        kill(getpid(), SIGTERM);
    return NULL;
}
