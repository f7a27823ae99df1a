/*
 * fsbridge_mount.c - fsbridge-mount, the guest daemon: mounts a directory
 * that fsbridged exports on the host, through FUSE.
 *
 * Order of work: parse the command line (options.c) and let libfuse check
 * the mount options; connect to the host and open a session
 * (handshake.c), so that a wrong address or export fails before anything
 * is mounted; unless in the foreground, fork into the background; mount
 * with libfuse (directly as root, through fusermount3 otherwise); relay
 * /dev/fuse to the host (relay.c) until the filesystem is unmounted, a
 * signal arrives, or the host goes away.
 *
 * libfuse is used only to mount and unmount: the relay does all /dev/fuse
 * I/O itself, since the requests are answered by the host, not here.
 *
 * Exit status: 0 once mounted (background) or after a clean unmount
 * (foreground); 1 for every failure, usage errors included.
 */
#define FUSE_USE_VERSION 35

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fuse3/fuse_lowlevel.h>

#include "common/log.h"
#include "mount/handshake.h"
#include "mount_matchlock/matchlock_mount.h"
#include "mount/options.h"
#include "mount/relay.h"
#include "mount/remount.h"

/* Everything one mount needs once the host session is open. */
struct mount_job {
    const struct mount_options *opts;
    const char *mountpoint; /* absolute: the daemon changes to / */
    struct fuse_session *se;
    int sock;
    struct fsb_session_ticket ticket; /* of the session sock opened */
    struct relay *relay;
};

/* ----------------------------------------------------------------------
 * libfuse: messages, mount options and the session
 */

/* libfuse's last error line, without its "fuse: " prefix: our own message
 * includes it, so that a failure is one line, not two.  libfuse builds
 * some lines from several fuse_log() calls, hence the partial line.
 * Global because libfuse's log hook is; only the main thread calls libfuse
 * (session creation, mounting, unmounting). */
static char libfuse_error[256];
static char libfuse_line[256];

static void libfuse_log(enum fuse_log_level level, const char *fmt, va_list ap)
{
    size_t used = strlen(libfuse_line);
    vsnprintf(libfuse_line + used, sizeof(libfuse_line) - used, fmt, ap);
    size_t len = strlen(libfuse_line);
    bool full = len + 1 >= sizeof(libfuse_line);
    if (len == 0 || (libfuse_line[len - 1] != '\n' && !full))
        return; /* the rest of the line is still to come */
    if (libfuse_line[len - 1] == '\n')
        libfuse_line[len - 1] = 0;
    const char *text = strncmp(libfuse_line, "fuse: ", 6) == 0 ? libfuse_line + 6 : libfuse_line;
    if (level <= FUSE_LOG_ERR)
        snprintf(libfuse_error, sizeof(libfuse_error), "%s", text);
    else
        log_debug("libfuse: %s", text);
    libfuse_line[0] = 0;
}

/* Our fsname= and subtype= come first so that a user's own win.  The
 * address may contain commas or backslashes (a Unix socket path): escape. */
static char *session_options(const struct mount_options *o)
{
    char fsname[sizeof("fsname=") + 128]; /* addresses: a type and <= 107 bytes */
    char *opts = NULL;
    snprintf(fsname, sizeof(fsname), "fsname=%s", o->addr.text);
    if (fuse_opt_add_opt_escaped(&opts, fsname) < 0 ||
        fuse_opt_add_opt(&opts, "subtype=fsbridge") < 0 ||
        (o->default_permissions && fuse_opt_add_opt(&opts, "default_permissions") < 0) ||
        (o->fuse_opts && fuse_opt_add_opt(&opts, o->fuse_opts) < 0)) {
        free(opts);
        return NULL;
    }
    return opts;
}

/* Creates the session, which is where libfuse checks the mount options:
 * an unknown one is reported before we connect to the host. */
static struct fuse_session *new_session(const struct mount_options *o,
                                        const struct fuse_lowlevel_ops *ops, size_t ops_size,
                                        void *userdata)
{
    char *opts = session_options(o);
    if (!opts) {
        log_error("out of memory");
        return NULL;
    }
    char *argv[] = { "fsbridge-mount", "-o", opts, NULL };
    struct fuse_args args = FUSE_ARGS_INIT(3, argv);
    struct fuse_session *se = fuse_session_new(&args, ops, ops_size, userdata);
    if (!se)
        log_error("%s", *libfuse_error ? libfuse_error : "bad mount options");
    fuse_opt_free_args(&args);
    free(opts);
    return se;
}

/* ----------------------------------------------------------------------
 * Running the relay
 */

/* Blocked in every thread and taken by one waiting thread, so that a
 * signal never interrupts a relay thread in the middle of a frame.
 * SIGHUP too: a foreground relay whose terminal goes away should unmount,
 * not die and leave a dead mount. */
static void handled_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
}

static void *signal_waiter_main(void *arg)
{
    struct relay *relay = arg;
    sigset_t set;
    int sig;
    handled_signals(&set);
    if (sigwait(&set, &sig) == 0) {
        log_debug("%s: unmounting", strsignal(sig));
        relay_stop(relay);
    }
    return NULL;
}

/* queues= or one per online CPU. */
static unsigned relay_queues(const struct mount_options *o)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (o->queues)
        return o->queues;
    return cpus < 1 ? 1 : cpus > RELAY_MAX_QUEUES ? RELAY_MAX_QUEUES : (unsigned)cpus;
}

/* relay_config.join: one more connection of the job's session.  A Unix
 * socket's host runs on this kernel, where the CPU numbers of the rings are
 * its own too: it may serve the connection on the ring's CPU.  A guest's
 * CPU means nothing to the host across vsock (a vCPU runs anywhere). */
static int join_session(void *arg, int cpu)
{
    const struct mount_job *job = arg;
    bool local = job->opts->addr.kind == FSB_ADDR_UNIX;
    return handshake_join(&job->opts->addr, job->opts->export_name, &job->ticket,
                          local ? cpu : -1);
}

/* A serial port or an inherited fd is the only way to the host there is;
 * a version-1 host takes one connection per session. */
static bool can_join(const struct mount_job *job)
{
    enum fsb_address_kind kind = job->opts->addr.kind;
    return job->ticket.joinable && (kind == FSB_ADDR_UNIX || kind == FSB_ADDR_VSOCK);
}

/*
 * host_events=on echoes the changes the host pushes (host_events.h), at a
 * price in every session: a node table updated under a lock at each name
 * request and reply (host_nodes.c), READDIRPLUS replies copied instead of
 * spliced, an echo thread.  A version-4 host says whether it pushes at all
 * (FSB_TERMS_PUSHES: cache=coherent); an older one cannot, so it keeps
 * them.
 */
static bool want_host_events(const struct mount_job *job)
{
    if (!job->opts->host_events)
        return false;
    if (job->ticket.version < FSB_STREAM_VERSION_TERMS ||
        job->ticket.terms.features & FSB_TERMS_PUSHES)
        return true;
    log_debug("the host pushes no changes to this export (not cache=coherent): "
              "no echo of host changes, no node table");
    return false;
}

static int start_relay(struct mount_job *job)
{
    struct relay_config cfg = {
        .sock = job->sock,
        .join = can_join(job) ? join_session : NULL,
        .join_arg = job,
        .session_fd = fuse_session_fd(job->se),
        .max_frame = job->ticket.max_frame,
        .terms = job->ticket.terms,
        .version = job->ticket.version,
        .queues = relay_queues(job->opts),
        .poll_us = job->opts->poll_us,
        .uring = job->opts->uring,
        .host_checks_permissions = !job->opts->default_permissions,
        .flush_shortcut = !job->opts->flush_by_host,
        .attr_notes = !job->opts->dir_attrs_by_host,
        .caps_shortcut = !job->opts->caps_by_host,
        .missing_names = !job->opts->lookups_by_host,
        .open_mode = job->opts->open_mode,
        .host_events = want_host_events(job),
        .mountpoint = job->mountpoint,
        .address = job->opts->addr.text,
    };
    pthread_t tid;
    if (relay_start(&cfg, &job->relay) < 0)
        return -1; /* logged */
    int err = pthread_create(&tid, NULL, signal_waiter_main, job->relay);
    if (err) {
        log_error("cannot start the relay: %s", strerror(err));
        return -1;
    }
    pthread_detach(tid);
    return 0;
}

/* Longest description relay_describe() gives, with its NUL. */
#define DESCRIPTION_MAX 96

/* The mount is live.  In the foreground, say so; in the background, tell
 * the waiting parent (which says so) how the relay runs, then let go of
 * the terminal. */
static void report_mounted(const struct mount_job *job, int ready_fd)
{
    char how[DESCRIPTION_MAX];
    snprintf(how, sizeof(how), "%s", relay_describe(job->relay));
    if (ready_fd < 0) {
        log_info("mounted %s on %s (%s)", job->opts->addr.text, job->mountpoint, how);
        return;
    }
    if (write(ready_fd, how, strlen(how) + 1) < 0)
        log_debug("parent gone before the mount was live");
    close(ready_fd);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
        close(null);
    }
    /* Relay threads may log meanwhile; they only ever see one of the two
     * settings, and lines written before the switch still reach stderr. */
    fsb_log_init("fsbridge-mount", true);
}

/*
 * Exit status for how the relay ended.  A lost host leaves the mount in
 * place, dead (see connection_lost() in relay.c), but only once it has
 * been live: a mount that never answered INIT is removed.
 */
static int finish(const struct mount_job *job, enum relay_end end, bool was_live)
{
    bool unmount = end != RELAY_UNMOUNTED && (end != RELAY_LOST || !was_live);
    if (unmount)
        fuse_session_unmount(job->se);
    return end == RELAY_UNMOUNTED || end == RELAY_STOPPED ? 0 : 1;
}

/* Mounts and relays until the end.  READY_FD (background only, else -1)
 * receives one byte once the mount is live.  Returns the exit status. */
static int serve(struct mount_job *job, int ready_fd)
{
    sigset_t set;
    if (fuse_session_mount(job->se, job->mountpoint) != 0) {
        log_error("cannot mount on %s: %s", job->mountpoint,
                  *libfuse_error ? libfuse_error : "see the message above");
        return 1;
    }
    /* Before any thread exists, so that every thread inherits the mask. */
    handled_signals(&set);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (start_relay(job) < 0) {
        fuse_session_unmount(job->se);
        return 1;
    }
    enum relay_end end = relay_wait_mounted(job->relay);
    bool live = end == RELAY_RUNNING;
    if (live)
        report_mounted(job, ready_fd);
    return finish(job, relay_wait(job->relay), live);
}

/* ----------------------------------------------------------------------
 * Background
 */

/* The parent's side: exits 0 only when the child says the mount is live
 * (by sending how the relay runs),
 * else with the child's status (its error message went to the terminal). */
static int wait_for_child(const struct mount_job *job, pid_t pid, int ready_fd)
{
    char how[DESCRIPTION_MAX] = "";
    ssize_t n;
    do
        n = read(ready_fd, how, sizeof(how) - 1);
    while (n < 0 && errno == EINTR);
    if (n > 0) {
        log_info("mounted %s on %s (%s)", job->opts->addr.text, job->mountpoint, how);
        return 0;
    }
    int status;
    if (waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) != 0)
        return WEXITSTATUS(status);
    return 1;
}

/* Forks before any thread exists (fork only copies the calling thread). */
static int run_background(struct mount_job *job)
{
    int ready[2];
    if (pipe2(ready, O_CLOEXEC) < 0) {
        log_error("pipe: %s", strerror(errno));
        return 1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        log_error("fork: %s", strerror(errno));
        return 1;
    }
    if (pid == 0) {
        close(ready[0]);
        setsid();
        /* Do not keep the caller's directory busy; every path we still
         * use is absolute. */
        if (chdir("/") < 0)
            log_debug("chdir /: %s", strerror(errno));
        exit(serve(job, ready[1]));
    }
    close(ready[1]);
    return wait_for_child(job, pid, ready[0]);
}

/* ----------------------------------------------------------------------
 * main
 */

/* Returns only on failures before the relay starts (or for a fake mount);
 * otherwise exits with the relay's status. */
static int mount_native(const struct mount_options *o, const char *mountpoint)
{
    /* Never called: requests are relayed, not served, by this program. */
    static const struct fuse_lowlevel_ops no_ops;
    struct mount_job job = { .opts = o, .mountpoint = mountpoint, .sock = -1 };
    job.se = new_session(o, &no_ops, sizeof(no_ops), NULL);
    if (!job.se)
        return 1;
    if (!o->fake)
        job.sock = handshake_open(&o->addr, o->export_name, &job.ticket);
    if (o->fake || job.sock < 0) {
        fuse_session_destroy(job.se);
        return o->fake ? 0 : 1;
    }
    /* exit() here rather than return: the relay threads still run and use
     * job and what it points to (and a leak checker sees them in use). */
    exit(o->foreground ? serve(&job, -1) : run_background(&job));
}

/* --protocol=matchlock: this program answers the kernel itself
 * (matchlock_mount.h).  Returns like mount_native(). */
static int mount_matchlock(const struct mount_options *o, const char *mountpoint)
{
    struct ml_mount *ml = ml_mount_new(o, mountpoint);
    struct fuse_session *se =
        ml ? new_session(o, &ml_fs_ops, sizeof(ml_fs_ops), ml_mount_userdata(ml)) : NULL;
    int status = se && o->fake ? 0 : 1;
    if (se && !o->fake && ml_mount_connect(ml) == 0) {
        if (fuse_session_mount(se, mountpoint) == 0) {
            sigset_t set;
            handled_signals(&set);
            exit(ml_mount_serve(ml, se, &set));
        }
        log_error("cannot mount on %s: %s", mountpoint,
                  *libfuse_error ? libfuse_error : "see the message above");
    }
    if (se)
        fuse_session_destroy(se);
    ml_mount_free(ml);
    return status;
}

/* The mountpoint as an absolute path, checked before anything connects.
 * The kernel would mount our directory root on a regular file too, and
 * every access would then fail with EIO: refuse it here. */
static int check_mountpoint(const char *given, char resolved[PATH_MAX])
{
    struct stat st;
    int err = 0;
    if (!realpath(given, resolved) || stat(resolved, &st) < 0)
        err = errno;
    else if (!S_ISDIR(st.st_mode))
        err = ENOTDIR;
    if (err)
        log_error("mountpoint %s: %s", given, strerror(err));
    return err ? -1 : 0;
}

static int run(const struct mount_options *opts)
{
    char mountpoint[PATH_MAX];
    if (opts->debug)
        fsb_log_level = FSB_LOG_DEBUG;
    /* A host that closes the stream must give EPIPE, not kill us. */
    signal(SIGPIPE, SIG_IGN);
    if (check_mountpoint(opts->mountpoint, mountpoint) < 0)
        return 1;
    if (opts->remount)
        return opts->fake || mount_remount(mountpoint, opts->fuse_opts) == 0 ? 0 : 1;
    switch (opts->protocol) {
    case MOUNT_PROTOCOL_NATIVE:
        return mount_native(opts, mountpoint);
    case MOUNT_PROTOCOL_MATCHLOCK:
        return mount_matchlock(opts, mountpoint);
    }
    return 1;
}

int main(int argc, char **argv)
{
    struct mount_options opts;
    int status = 1;

    fsb_log_init("fsbridge-mount", false);
    fuse_set_log_func(libfuse_log);
    switch (mount_options_parse(argc, argv, &opts)) {
    case MOUNT_PARSE_RUN:
        status = run(&opts);
        break;
    case MOUNT_PARSE_EXIT:
        status = 0;
        break;
    case MOUNT_PARSE_ERROR:
        status = 1;
        break;
    }
    free(opts.fuse_opts);
    return status;
}
