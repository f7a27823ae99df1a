/*
 * main.c - fsbridged: the host daemon.  Parses the command line, opens the
 * exports and sockets (so that every user error is reported before
 * anything runs), enters the sandbox, then serves stream sessions until
 * SIGTERM or SIGINT, and/or one virtio-fs frontend until it disconnects.
 */
#include "backend/passthrough/passthrough.h"
#include "common/log.h"
#include "engine/fuse_engine.h"
#include "fsbridged/export_paths.h"
#include "fsbridged/options.h"
#include "fsbridged/sandbox.h"
#include "backend/passthrough/change_watch.h"
#include "fsbridged/service_notify.h"
#include "fsbridged/vhost_run.h"
#include "transport/read_pipes.h"
#include "transport/stream_server.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
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
    int notify_fd;                      /* systemd's NOTIFY_SOCKET, or -1 */
};

/* An overlay export's UPPER and work dir (overlay.h): locked, staging
 * cleaned. */
static int open_overlay(struct fsb_export *e)
{
    const char *why = "";
    int err = overlay_open_dirs(e->overlay, e->overlay_work, &e->overlay_dirs, &why);
    if (err) {
        log_error("export %s: overlay %s (work dir %s): %s: %s", e->name, e->overlay,
                  e->overlay_work, why, strerror(-err));
        return -1;
    }
    return 0;
}

/* cache=coherent: the watcher is opened here, before the sandbox (a
 * fanotify filesystem mark is set on the host's path); without one the
 * export is served as cache=auto (logged by change_watch_open).  Overlay
 * exports cannot be coherent (options.c refuses them). */
static void open_change_watch(struct fsb_export *e)
{
    e->watch = change_watch_open(e->root_fd, e->name);
}

/* The watchers' threads start inside the sandbox, under its seccomp
 * filter; one that cannot start leaves its export to cache=auto. */
static void start_change_watches(struct options *o)
{
    for (unsigned i = 0; i < o->nexports; i++) {
        struct fsb_export *e = &o->exports[i];
        if (e->watch && change_watch_start(e->watch, e->root_fd) < 0) {
            log_warn("export '%s': cannot start the change watcher: served as cache=auto",
                     e->name);
            change_watch_close(e->watch);
            e->watch = NULL;
        }
    }
}

static int open_export(struct fsb_export *e)
{
    e->root_fd = open(e->path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (e->root_fd < 0) {
        log_error("export %s: %s: %s", e->name, e->path, strerror(errno));
        return -1;
    }
    e->dir_offsets_stable = passthrough_dir_offsets_stable(e->root_fd);
    if (e->cache == FSB_CACHE_COHERENT) {
        open_change_watch(e);
        if (!e->dir_offsets_stable)
            log_info("export '%s': directory offsets of its filesystem are not stable "
                     "across opens: directories are opened for each listing", e->name);
    }
    return e->overlay[0] ? open_overlay(e) : 0;
}

/* The exports (and the virtio-fs one) in one list; their number. */
static unsigned all_exports(struct options *o, struct fsb_export *out[MAX_EXPORTS + 1])
{
    unsigned n = 0;
    for (unsigned i = 0; i < o->nexports; i++)
        out[n++] = &o->exports[i];
    if (o->vhost.wanted)
        out[n++] = &o->vhost.export;
    return n;
}

static int name_work_dir(struct fsb_export *e)
{
    if (!e->overlay[0] || e->overlay_work[0] ||
        overlay_default_work(e->overlay, e->overlay_work, sizeof(e->overlay_work)) == 0)
        return 0;
    log_error("export %s: overlay directory name too long", e->name);
    return -1;
}

/* Work dirs named and overlaps refused before anything is made or locked. */
static int open_exports(struct options *o)
{
    struct fsb_export *exports[MAX_EXPORTS + 1] = { NULL }; /* -O3 cannot see all_exports fill it */
    unsigned n = all_exports(o, exports);
    for (unsigned i = 0; i < n; i++)
        if (name_work_dir(exports[i]) < 0)
            return -1;
    if (export_paths_check(exports, n) < 0)
        return -1;
    for (unsigned i = 0; i < n; i++)
        if (open_export(exports[i]) < 0)
            return -1;
    return 0;
}

/* Opens the listeners in order, remembering the socket files we created
 * (a busy path belongs to another daemon and is never removed). */
static int open_listeners(struct daemon_state *d)
{
    for (unsigned i = 0; i < d->o->nlisten; i++) {
        const struct fsb_address *a = &d->o->listen[i];
        int fd = fsb_address_listen(a, &d->o->socket_access);
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

/* Whether listener I is AF_VSOCK (vsock:, or an inherited vsock socket). */
static bool is_vsock_listener(const struct daemon_state *d, unsigned i)
{
    int domain = 0;
    socklen_t len = sizeof(domain);
    return d->o->listen[i].kind == FSB_ADDR_VSOCK ||
           (getsockopt(d->listen_fds[i], SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 &&
            domain == AF_VSOCK);
}

/* Every guest that reaches an unbound vsock listener may mount every
 * export: fine for one VM, a mistake on a host of several. */
static void warn_unbound_vsock(const struct daemon_state *d)
{
    const struct options *o = d->o;
    bool every_export_bound = true;
    for (unsigned e = 0; e < o->nexports; e++)
        every_export_bound &= o->exports[e].vsock_cids.n > 0;
    for (unsigned i = 0; i < d->nlistening && o->nexports > 1 && !every_export_bound; i++) {
        const struct fsb_listener_rules *r = &o->listen_rules[i];
        if (is_vsock_listener(d, i) && r->exports == FSB_ALL_EXPORTS && r->cids.n == 0)
            log_warn("listen %s: every guest that can connect may mount all %u exports: "
                     "bind it (,exports=NAME or ,cid=N, or cid= on the exports)",
                     o->listen[i].text, o->nexports);
    }
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

/* As root the daemon drops its own supplementary groups: the per-thread
 * credential switch sets uid and gid only, and root's groups must not
 * lend guest callers their access. */
static int prepare_process(void)
{
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

/* The fds open now (exports, listeners, the signalfd, logging). */
static unsigned open_fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    unsigned n = 0;
    if (!d)
        return 64;
    while (readdir(d))
        n++;
    closedir(d);
    return n > 3 ? n - 3 : 0; /* ".", ".." and the directory's own fd */
}

/* Fds a connection holds: its socket, its session's root fd and mount fd. */
#define FDS_PER_CONNECTION 3

/*
 * The fds guests hold together come from one pool (common/budget.h): what
 * RLIMIT_NOFILE leaves after the daemon's own fds and reserve, the inode
 * fd cache, and the fds of --max-sessions connections, see
 * passthrough_guest_fd_pool; under a small limit --max-sessions is cut to
 * what fits, so that connections cannot take the reserve either.  Unless
 * given, a guest's open-file budget is the pool shared by 100 guests.
 */
static void size_fd_pool(struct options *o)
{
    unsigned conn_fds = FDS_PER_CONNECTION * o->max_sessions;
    size_t pool = passthrough_guest_fd_pool(open_fd_count(), &conn_fds);
    if (conn_fds / FDS_PER_CONNECTION < o->max_sessions) {
        o->max_sessions = conn_fds / FDS_PER_CONNECTION ? conn_fds / FDS_PER_CONNECTION : 1;
        log_warn("RLIMIT_NOFILE allows %u sessions at most", o->max_sessions);
    }
    fsb_fd_pool_init(pool);
    if (!o->guest_limits.max[FSB_BUDGET_OPEN])
        o->guest_limits.max[FSB_BUDGET_OPEN] = options_default_open(pool);
    log_info("fd pool for guests: %zu; per guest: %zu open files, %zu inodes, %zu sessions, "
             "%zu queued bytes, %zu threads", pool, o->guest_limits.max[FSB_BUDGET_OPEN],
             o->guest_limits.max[FSB_BUDGET_INODES], o->guest_limits.max[FSB_BUDGET_SESSIONS],
             o->guest_limits.max[FSB_BUDGET_QUEUED], o->guest_limits.max[FSB_BUDGET_THREADS]);
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
    warn_unbound_vsock(d);
    /* Before the sandbox drops CAP_SYS_RESOURCE (pipes of more than 1 MiB)
     * and before the fds are counted (read_pipes.h). */
    int err = d->nlistening ? read_pipes_open(FSB_MAX_WRITE) : 0;
    if (err)
        log_warn("cannot make pipes for READ data (%s): it is copied", strerror(-err));
    if (d->o->vhost.wanted &&
        vhost_run_open(&d->vhost, &d->o->vhost, &d->o->socket_access, &d->o->allow_uids) < 0)
        return -1;
    /* From here on the daemon creates files only for guests, and the mode
     * bits a guest asks for are applied exactly (its kernel already
     * applied its umask).  The sockets above got their own modes. */
    umask(0);
    /* After the listeners, so that it cannot take the number of an fd:N
     * that was not inherited; before the sandbox hides its path. */
    d->notify_fd = service_notify_open();
    size_fd_pool(d->o);
    d->vhost.guest_limits = &d->o->guest_limits;
    return 0;
}

/*
 * FSB_TERMS_QUIET_CLOSE (stream exports only: virtio-fs has no terms).  A
 * passthrough export's close is quiet when passthrough_close_quiet says
 * so, and only inside the sandbox's private mount namespace: without it a
 * mount made on the host later, below the export, is crossed into by
 * lookups and would break the rule unseen.  Overlay exports are not: the
 * rule would have to hold for both layers (two filesystems, each with its
 * own mounts below), which is not checked.
 */
static bool export_close_quiet(const struct fsb_export *e, bool private_mounts, char *why,
                               size_t size)
{
    if (e->overlay[0]) {
        snprintf(why, size, "it is an overlay (two filesystems)");
        return false;
    }
    if (!private_mounts) {
        snprintf(why, size, "no sandbox (a mount below it may appear later)");
        return false;
    }
    return passthrough_close_quiet(e->root_fd, why, size);
}

static void decide_close_quiet(struct options *o, bool private_mounts)
{
    for (unsigned i = 0; i < o->nexports; i++) {
        struct fsb_export *e = &o->exports[i];
        char why[PATH_MAX + 64];
        e->close_quiet = export_close_quiet(e, private_mounts, why, sizeof(why));
        log_info("export '%s': close is %s: %s", e->name,
                 e->close_quiet ? "quiet (guests may answer FLUSH themselves)" : "not quiet", why);
    }
}

static int enter_sandbox(struct options *o)
{
    struct fsb_export *exports[MAX_EXPORTS + 1] = { NULL }; /* -O3 cannot see all_exports fill it */
    unsigned n = all_exports(o, exports);
    int r = sandbox_enter(o->vhost.sandbox, o->vhost.seccomp, exports, n);
    if (r >= 0)
        decide_close_quiet(o, r == 1);
    return r < 0 ? -1 : 0;
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
        .poll_us = d->o->vhost.poll_us,
        .follow_cpu_hints = d->o->follow_cpu_hints,
        .listener_rules = d->o->listen_rules,
        .guest_limits = &d->o->guest_limits,
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
    static struct daemon_state d = { .o = &o, .notify_fd = -1 };

    fsb_log_init("fsbridged", false);
    int r = options_parse(argc, argv, &o);
    if (r)
        return r > 0 ? 0 : 2;
    fsb_log_init("fsbridged", o.syslog);
    r = 1;
    if (open_everything(&d) == 0 && enter_sandbox(&o) == 0) {
        start_change_watches(&o);
        service_notify(d.notify_fd, "READY=1");
        r = serve(&d);
        service_notify(d.notify_fd, "STOPPING=1");
        log_info("stopped");
    }
    remove_socket_files(&d);
    return r;
}
