/*
 * main.c - fsbridged: the host daemon.  Parses the command line, opens the
 * exports and listeners (so that every user error is reported before
 * anything runs), then serves stream sessions until SIGTERM or SIGINT.
 */
#include "backend/passthrough/passthrough.h"
#include "common/log.h"
#include "fsbridged/options.h"
#include "transport/stream_server.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

static int open_exports(struct options *o)
{
    for (unsigned i = 0; i < o->nexports; i++) {
        struct fsb_export *e = &o->exports[i];
        e->root_fd = open(e->path, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (e->root_fd < 0) {
            log_error("export %s: %s: %s", e->name, e->path, strerror(errno));
            return -1;
        }
    }
    return 0;
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

int main(int argc, char **argv)
{
    static struct options o;
    int listen_fds[MAX_LISTENERS];

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
    unsigned opened = open_listeners(&o, listen_fds);
    if (opened < o.nlisten) {
        remove_unix_sockets(&o, opened);
        return 1;
    }
    struct stream_server_config cfg = {
        .exports = o.exports,
        .nexports = o.nexports,
        .listen_fds = listen_fds,
        .nlisten = o.nlisten,
        .max_workers = o.max_workers,
        .max_sessions = o.max_sessions,
        .stop_fd = stop_fd,
    };
    r = stream_server_run(&cfg);
    remove_unix_sockets(&o, o.nlisten);
    log_info("stopped");
    return r ? 1 : 0;
}
