/*
 * matchlock_mount.c - see matchlock_mount.h.
 *
 * Threads once mounted: N workers, each reading requests from /dev/fuse
 * and answering them (a request waits for a free host connection, so N
 * workers keep up to N requests in flight over the pool); the client's
 * watcher of idle connections; one thread taking the handled signals.
 * The main thread waits for the first of them to say how the mount ends.
 */
#include "mount_matchlock/matchlock_mount.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

_Static_assert(MOUNT_MAX_CONNECTIONS <= ML_CLIENT_MAX_CONNS,
               "connections= must fit the client's pool");

enum ml_end {
    ML_RUNNING,
    ML_UNMOUNTED,    /* /dev/fuse said the mount is gone */
    ML_STOPPED,      /* a signal */
    ML_LOST,         /* the host went away */
    ML_DEVICE_ERROR, /* reading /dev/fuse failed otherwise */
};

struct ml_mount {
    const struct mount_options *opts;
    const char *mountpoint;
    struct ml_fs fs;
    struct fuse_session *se;
    sigset_t signals;
    pthread_mutex_t lock;
    pthread_cond_t ended;
    enum ml_end end;
    int device_error;  /* errno, for ML_DEVICE_ERROR */
};

struct ml_mount *ml_mount_new(const struct mount_options *o, const char *mountpoint)
{
    const char *prefix = *o->prefix ? o->prefix : mountpoint;
    if (strlen(prefix) > ML_PREFIX_MAX) {
        /* The protocol's paths are a prefix and up to PATH_MAX - 1 bytes
         * below it (ml_codec.h): the prefix has a limit of its own. */
        log_error("the guest path prefix %s is over %u bytes (set a shorter one with prefix=)",
                  prefix, ML_PREFIX_MAX);
        return NULL;
    }
    struct ml_mount *m = calloc(1, sizeof(*m));
    if (m)
        m->fs.nodes = ml_nodes_new(prefix);
    if (!m || !m->fs.nodes) {
        log_error("out of memory");
        free(m);
        return NULL;
    }
    m->opts = o;
    m->mountpoint = mountpoint;
    pthread_mutex_init(&m->fs.open_lock, NULL);
    snprintf(m->fs.prefix, sizeof(m->fs.prefix), "%s", prefix);
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->ended, NULL);
    return m;
}

void ml_mount_free(struct ml_mount *m)
{
    if (!m)
        return;
    ml_client_close(m->fs.client);
    ml_nodes_free(m->fs.nodes);
    pthread_mutex_destroy(&m->fs.open_lock);
    pthread_cond_destroy(&m->ended);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

void *ml_mount_userdata(struct ml_mount *m)
{
    return &m->fs;
}

/* The first ending wins; the main thread acts on it. */
static void note_end(struct ml_mount *m, enum ml_end end, int err)
{
    pthread_mutex_lock(&m->lock);
    if (m->end == ML_RUNNING) {
        m->end = end;
        m->device_error = err;
        pthread_cond_signal(&m->ended);
    }
    pthread_mutex_unlock(&m->lock);
}

static void host_lost(void *arg)
{
    note_end(arg, ML_LOST, 0);
}

int ml_mount_connect(struct ml_mount *m)
{
    struct ml_client_config cfg = {
        .addr = &m->opts->addr,
        .max_conns = m->opts->connections,
        .on_lost = host_lost,
        .arg = m,
    };
    m->fs.client = ml_client_open(&cfg);
    if (!m->fs.client)
        return -1;
    ml_client_set_timeout(m->fs.client, ML_CLIENT_STARTUP_TIMEOUT_MS);
    return ml_fs_probe(&m->fs, m->opts->addr.text);
}

/* ----------------------------------------------------------------------
 * Threads
 */

static void *worker_main(void *arg)
{
    struct ml_mount *m = arg;
    struct fuse_buf buf = { .mem = NULL };
    int res = 0;
    while (!fuse_session_exited(m->se)) {
        res = fuse_session_receive_buf(m->se, &buf);
        if (res == -EINTR || res == -EAGAIN)
            continue;
        if (res <= 0)
            break;
        fuse_session_process_buf(m->se, &buf);
    }
    /* libfuse reports the end of the mount (ENODEV) as 0 and exits the
     * session; anything else is a device error. */
    if (res < 0 && res != -ENODEV)
        note_end(m, ML_DEVICE_ERROR, -res);
    else
        note_end(m, ML_UNMOUNTED, 0);
    free(buf.mem);
    return NULL;
}

static void *signal_main(void *arg)
{
    struct ml_mount *m = arg;
    int sig;
    if (sigwait(&m->signals, &sig) == 0) {
        log_debug("%s: unmounting", strsignal(sig));
        note_end(m, ML_STOPPED, 0);
    }
    return NULL;
}

static int start_thread(void *(*fn)(void *), void *arg)
{
    pthread_t tid;
    int err = pthread_create(&tid, NULL, fn, arg);
    if (!err)
        pthread_detach(tid);
    return -err;
}

static int start_threads(struct ml_mount *m)
{
    int err = ml_client_start_watcher(m->fs.client);
    if (!err)
        err = start_thread(signal_main, m);
    for (unsigned i = 0; !err && i < m->opts->threads; i++)
        err = start_thread(worker_main, m);
    if (err)
        log_error("cannot start threads: %s", strerror(-err));
    return err;
}

static enum ml_end wait_end(struct ml_mount *m)
{
    pthread_mutex_lock(&m->lock);
    while (m->end == ML_RUNNING)
        pthread_cond_wait(&m->ended, &m->lock);
    enum ml_end end = m->end;
    pthread_mutex_unlock(&m->lock);
    return end;
}

/* ----------------------------------------------------------------------
 * Serving
 */

/* A lost host leaves the mount in place, dead (the kernel fails every
 * access with ENOTCONN once this process exits): an unmount would let
 * programs write into the directory underneath without noticing. */
static int finish(struct ml_mount *m, enum ml_end end)
{
    const char *address = m->opts->addr.text;
    switch (end) {
    case ML_UNMOUNTED:
        return 0;
    case ML_STOPPED:
        fuse_session_unmount(m->se);
        return 0;
    case ML_LOST:
        log_error("lost connection to %s: %s", address, ml_client_lost_reason(m->fs.client));
        return 1;
    case ML_DEVICE_ERROR:
    case ML_RUNNING:
        break;
    }
    log_error("reading /dev/fuse: %s", strerror(m->device_error));
    fuse_session_unmount(m->se);
    return 1;
}

int ml_mount_serve(struct ml_mount *m, struct fuse_session *se, const sigset_t *signals)
{
    m->se = se;
    m->signals = *signals;
    log_info("mounted %s on %s", m->opts->addr.text, m->mountpoint);
    /* Forks (without -f) while no thread runs yet; the parent exits 0. */
    if (fuse_daemonize(m->opts->foreground) != 0) {
        log_error("cannot go to the background: %s", strerror(errno));
        fuse_session_unmount(se);
        return 1;
    }
    if (!m->opts->foreground)
        fsb_log_init("fsbridge-mount", true);
    ml_client_set_timeout(m->fs.client, 0);
    /* Before any thread exists, so that every thread inherits the mask. */
    pthread_sigmask(SIG_BLOCK, signals, NULL);
    if (start_threads(m) < 0) {
        fuse_session_unmount(se);
        return 1;
    }
    return finish(m, wait_end(m));
}
