/*
 * main.c - fsbridged: the host daemon.  Parses the command line, opens the
 * exports and sockets (so that every user error is reported before
 * anything runs), enters the sandbox, then serves stream sessions until
 * SIGTERM or SIGINT, and/or one virtio-fs frontend until it disconnects.
 */
#include "backend/passthrough/passthrough.h"
#include "common/log.h"
#include "fsbridged/options.h"
#include "fsbridged/sandbox.h"
#include "fsbridged/vhost_run.h"
#include "transport/stream_server.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

/* What main opened, for serving and for cleaning up. */
struct daemon_state {
    struct options *o;
    int stop_fd;                        /* SIGTERM/SIGINT */
    int listen_fds[MAX_LISTENERS];
    struct fsb_socket_file socket_files[MAX_LISTENERS];
    unsigned nlistening;
    struct vhost_run vhost;
};

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

/* Opens the listeners in order, remembering the socket files we created
 * (a busy path belongs to another daemon and is never removed). */
static int open_listeners(struct daemon_state *d)
{
    for (unsigned i = 0; i < d->o->nlisten; i++) {
        const struct fsb_address *a = &d->o->listen[i];
        int fd = fsb_address_listen(a);
        if (fd < 0) {
            log_error("listen %s: %s", a->text, strerror(-fd));
            return -1;
        }
        d->listen_fds[d->nlistening] = fd;
        d->socket_files[d->nlistening].dirfd = -1;
        if (a->kind == FSB_ADDR_UNIX)
            fsb_socket_file_open(a->path, &d->socket_files[d->nlistening]);
        d->nlistening++;
        log_info("listening on %s", a->text);
    }
    return 0;
}

static void remove_socket_files(struct daemon_state *d)
{
    for (unsigned i = 0; i < d->nlistening; i++)
        fsb_socket_file_remove(&d->socket_files[i]);
    fsb_socket_file_remove(&d->vhost.file);
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
    int fd = signalfd(-1, &set, SFD_CLOEXEC);
    if (fd < 0)
        log_error("signalfd: %s", strerror(errno));
    return fd;
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

/* Everything that can fail because of the user, before anything runs. */
static int open_everything(struct daemon_state *d)
{
    d->vhost.file.dirfd = -1;
    if (prepare_process() < 0 || open_exports(d->o) < 0)
        return -1;
    d->stop_fd = stop_signal_fd();
    if (d->stop_fd < 0 || open_listeners(d) < 0)
        return -1;
    if (d->o->vhost.wanted && vhost_run_open(&d->vhost, &d->o->vhost) < 0)
        return -1;
    return 0;
}

static int enter_sandbox(struct options *o)
{
    struct fsb_export *exports[MAX_EXPORTS + 1];
    unsigned n = 0;
    for (unsigned i = 0; i < o->nexports; i++)
        exports[n++] = &o->exports[i];
    if (o->vhost.wanted)
        exports[n++] = &o->vhost.export;
    return sandbox_enter(o->vhost.sandbox, o->vhost.seccomp, exports, n);
}

static int serve_streams(struct daemon_state *d)
{
    struct stream_server_config cfg = {
        .exports = d->o->exports,
        .nexports = d->o->nexports,
        .listen_fds = d->listen_fds,
        .nlisten = d->nlistening,
        .max_workers = d->o->max_workers,
        .max_sessions = d->o->max_sessions,
        .max_sessions_per_peer = d->o->max_sessions_per_peer,
        .stop_fd = d->stop_fd,
    };
    return stream_server_run(&cfg) ? 1 : 0;
}

/* virtio-fs alone runs on the main thread; with stream listeners too, on
 * a thread of its own that ends the process (as virtiofsd does) when the
 * frontend goes: it raises SIGTERM, which the stream server obeys. */
static int serve(struct daemon_state *d)
{
    if (!d->o->vhost.wanted)
        return serve_streams(d);
    struct vhost_run *run = &d->vhost;
    if (d->nlistening == 0) {
        run->stop_fd = d->stop_fd;
        vhost_run_main(run);
        return run->result ? 1 : 0;
    }
    pthread_t thread;
    run->end_process = true;
    run->stop_fd = eventfd(0, EFD_CLOEXEC);
    if (run->stop_fd < 0 || pthread_create(&thread, NULL, vhost_run_main, run) != 0) {
        log_error("cannot start the virtio-fs thread");
        return 1;
    }
    int r = serve_streams(d);
    (void)eventfd_write(run->stop_fd, 1);
    pthread_join(thread, NULL);
    close(run->stop_fd);
    return r || run->result ? 1 : 0;
}

int main(int argc, char **argv)
{
    static struct options o;
    static struct daemon_state d = { .o = &o };

    fsb_log_init("fsbridged", false);
    int r = options_parse(argc, argv, &o);
    if (r)
        return r > 0 ? 0 : 2;
    fsb_log_init("fsbridged", o.syslog);
    r = 1;
    if (open_everything(&d) == 0 && enter_sandbox(&o) == 0) {
        r = serve(&d);
        log_info("stopped");
    }
    remove_socket_files(&d);
    return r;
}
