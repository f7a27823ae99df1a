/*
 * main.c - fsbridged: the host daemon.  Parses the command line, opens the
 * exports and listeners (so that every user error is reported before
 * anything runs), then serves stream sessions until SIGTERM or SIGINT,
 * and/or one virtio-fs frontend until it disconnects.
 */
#include "backend/passthrough/passthrough.h"
#include "common/log.h"
#include "fsbridged/options.h"
#include "transport/stream_server.h"
#include "transport/vhost/virtio_fs.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static int open_export(struct fsb_export *e)
{
    e->root_fd = open(e->path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (e->root_fd < 0) {
        log_error("export %s: %s: %s", e->name, e->path, strerror(errno));
        return -1;
    }
    return 0;
}

static int open_exports(struct options *o)
{
    for (unsigned i = 0; i < o->nexports; i++)
        if (open_export(&o->exports[i]) < 0)
            return -1;
    return o->vhost.wanted ? open_export(&o->vhost.export) : 0;
}

/* Opens the listeners in order; returns how many were opened (all of them,
 * or those before the one that failed, after saying why). */
static unsigned open_listeners(const struct options *o, int *fds)
{
    for (unsigned i = 0; i < o->nlisten; i++) {
        fds[i] = fsb_address_listen(&o->listen[i]);
        if (fds[i] < 0) {
            log_error("listen %s: %s", o->listen[i].text, strerror(-fds[i]));
            return i;
        }
        log_info("listening on %s", o->listen[i].text);
    }
    return o->nlisten;
}

/* Removes the socket files of the first N listeners: only those we
 * created (a busy path belongs to another daemon). */
static void remove_unix_sockets(const struct options *o, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (o->listen[i].kind == FSB_ADDR_UNIX)
            unlink(o->listen[i].path);
}

/* ---- virtio-fs ------------------------------------------------------------ */

/* The socket the vhost-user frontend connects to: --socket-path, or --fd
 * (libvirt passes a listening socket; a connected one is used as it is). */
static int vhost_socket(const struct vhost_options *v, bool *listening)
{
    *listening = true;
    if (v->fd >= 0) {
        int on = 0;
        socklen_t len = sizeof(on);
        if (getsockopt(v->fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) < 0) {
            log_error("--fd %d: not a socket: %s", v->fd, strerror(errno));
            return -1;
        }
        *listening = on;
        return v->fd;
    }
    struct fsb_address a = { .kind = FSB_ADDR_UNIX, .text = v->socket_path };
    strcpy(a.path, v->socket_path);
    int fd = fsb_address_listen(&a);
    if (fd < 0)
        log_error("--socket-path %s: %s", v->socket_path, strerror(-fd));
    return fd;
}

/* Waits for the frontend; -1 when STOP_FD fired first. */
static int vhost_accept(int lfd, int stop_fd)
{
    struct pollfd pfd[2] = { { .fd = lfd, .events = POLLIN }, { .fd = stop_fd, .events = POLLIN } };
    for (;;) {
        if (poll(pfd, 2, -1) < 0 && errno != EINTR)
            return -1;
        if (pfd[1].revents)
            return -1;
        if (pfd[0].revents) {
            int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
            if (fd >= 0 || (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED))
                return fd;
        }
    }
}

struct vhost_run {
    struct options *o;
    int sock;
    bool listening;
    int stop_fd;
    bool end_process;   /* on a thread beside the stream server */
    int result;
};

/* Serves the one frontend virtiofsd-style: accept, stop listening (the
 * socket file goes away), serve until it disconnects. */
static void *vhost_main(void *arg)
{
    struct vhost_run *run = arg;
    const struct vhost_options *v = &run->o->vhost;
    log_info("virtio-fs: sharing %s, waiting for the vhost-user frontend", v->export.path);
    int conn = run->listening ? vhost_accept(run->sock, run->stop_fd) : run->sock;
    if (run->listening) {
        close(run->sock);
        if (v->socket_path[0])
            unlink(v->socket_path);
    }
    if (conn < 0) {
        run->result = 0; /* stopped before a frontend came */
        return NULL;
    }
    log_info("virtio-fs: frontend connected");
    struct virtio_fs_config cfg = { .export = &v->export,
                                    .thread_pool_size = v->thread_pool_size };
    run->result = virtio_fs_serve(conn, &cfg, run->stop_fd);
    log_info("virtio-fs: frontend %s", run->result ? "broke the protocol" : "disconnected");
    if (run->end_process)
        kill(getpid(), SIGTERM);
    return NULL;
}

/* SIGTERM and SIGINT arrive on a signalfd that the server polls; they are
 * blocked in every thread (threads inherit the mask). */
static int stop_signal_fd(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN); /* a vanished peer is an EPIPE, not a death */
    return signalfd(-1, &set, SFD_CLOEXEC);
}

/* The mode bits a guest asks for are applied exactly (its kernel already
 * applied its umask), and as root the daemon drops its own supplementary
 * groups: the per-thread credential switch sets uid and gid only, and
 * root's groups must not lend guest callers their access. */
static int prepare_process(void)
{
    umask(0);
    if (geteuid() == 0 && setgroups(0, NULL) < 0) {
        log_error("dropping supplementary groups: %s", strerror(errno));
        return -1;
    }
    int err = passthrough_global_init();
    if (err) {
        log_error("opening /proc/self/fd: %s", strerror(-err));
        return -1;
    }
    return 0;
}

/* Stream sessions until STOP_FD fires; returns 0 or 1. */
static int serve_streams(struct options *o, int stop_fd)
{
    int listen_fds[MAX_LISTENERS];
    unsigned opened = open_listeners(o, listen_fds);
    if (opened < o->nlisten) {
        remove_unix_sockets(o, opened);
        return 1;
    }
    struct stream_server_config cfg = {
        .exports = o->exports,
        .nexports = o->nexports,
        .listen_fds = listen_fds,
        .nlisten = o->nlisten,
        .max_workers = o->max_workers,
        .max_sessions = o->max_sessions,
        .stop_fd = stop_fd,
    };
    int r = stream_server_run(&cfg);
    remove_unix_sockets(o, o->nlisten);
    return r ? 1 : 0;
}

/* virtio-fs alone runs on the main thread; with stream listeners too, on
 * a thread of its own that ends the process (as virtiofsd does) when the
 * frontend goes: it raises SIGTERM, which the stream server obeys. */
static int serve(struct options *o, int stop_fd)
{
    if (!o->vhost.wanted)
        return serve_streams(o, stop_fd);
    struct vhost_run run = { .o = o };
    run.sock = vhost_socket(&o->vhost, &run.listening);
    if (run.sock < 0)
        return 1;
    if (o->nlisten == 0) {
        run.stop_fd = stop_fd;
        vhost_main(&run);
        return run.result ? 1 : 0;
    }
    pthread_t thread;
    run.end_process = true;
    run.stop_fd = eventfd(0, EFD_CLOEXEC);
    if (run.stop_fd < 0 || pthread_create(&thread, NULL, vhost_main, &run) != 0) {
        log_error("cannot start the virtio-fs thread");
        return 1;
    }
    int r = serve_streams(o, stop_fd);
    (void)eventfd_write(run.stop_fd, 1);
    pthread_join(thread, NULL);
    close(run.stop_fd);
    return r || run.result ? 1 : 0;
}

int main(int argc, char **argv)
{
    static struct options o;

    fsb_log_init("fsbridged", false);
    int r = options_parse(argc, argv, &o);
    if (r)
        return r > 0 ? 0 : 2;
    fsb_log_init("fsbridged", o.syslog);
    if (prepare_process() < 0 || open_exports(&o) < 0)
        return 1;
    int stop_fd = stop_signal_fd();
    if (stop_fd < 0) {
        log_error("signalfd: %s", strerror(errno));
        return 1;
    }
    r = serve(&o, stop_fd);
    log_info("stopped");
    return r;
}
