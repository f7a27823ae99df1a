/*
 * vhost_client.c - functional checks of a vhost-user-fs backend through the
 * test frontend, one session, commands run in order:
 *
 *   vhost-client [OPTIONS] SOCKET COMMAND...
 *
 * It connects as QEMU would, starts the rings, sends FUSE_INIT, then runs
 * each COMMAND (arguments separated by ':'), printing "ok COMMAND ..." or
 * "FAIL COMMAND: why" and stopping at the first failure (exit 1).  Data
 * goes between host files and the export so that the caller (the pytest
 * suite) checks it on the host directory.  Run with --help for the list.
 */
#include "vu_fuse.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>
#include <unistd.h>

#define CHUNK (128u * 1024)
#define SLOT_IN (CHUNK + 4096)
#define SLOT_OUT (CHUNK + 4096)
#define ROOT FUSE_ROOT_ID

struct client {
    struct vu_frontend fe;
    struct vu_fuse fs;
    const char *shared_dir;
    const char *cmd;     /* the command running, for messages */
};

static int fail(struct client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct client *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL %s: ", c->cmd);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    return -1;
}

/* A FUSE call's result as text: the errno's name, or the transport error. */
static const char *why(struct client *c, int err)
{
    return err == VU_FUSE_BROKEN ? c->fe.error : strerror(-err);
}

static int lookup(struct client *c, const char *name, struct fuse_entry_out *e)
{
    int err = vu_fuse_lookup(&c->fs, ROOT, name, e);
    return err ? fail(c, "LOOKUP %s: %s", name, why(c, err)) : 0;
}

static int forget(struct client *c, uint64_t nodeid, uint64_t n)
{
    int err = vu_fuse_forget(&c->fs, nodeid, n);
    return err ? fail(c, "FORGET: %s", why(c, err)) : 0;
}

/* Looks NAME up and opens it with FLAGS into *E and *FH: 0, or -1 said. */
static int open_name(struct client *c, const char *name, int flags, struct fuse_entry_out *e,
                     uint64_t *fh)
{
    if (lookup(c, name, e))
        return -1;
    int err = vu_fuse_open(&c->fs, e->nodeid, flags, fh);
    return err ? fail(c, "OPEN %s: %s", name, why(c, err)) : 0;
}

/* RELEASE of FH, then FORGET of the lookup that found NODEID: 0, or -1
 * said. */
static int close_file(struct client *c, uint64_t nodeid, uint64_t fh)
{
    int err = vu_fuse_release(&c->fs, nodeid, fh);
    if (err)
        return fail(c, "RELEASE: %s", why(c, err));
    return forget(c, nodeid, 1);
}

static uint32_t chunk_size(const struct client *c)
{
    uint32_t max = c->fs.init.max_write;
    return max && max < CHUNK ? max : CHUNK;
}

/* ---- data ------------------------------------------------------------- */

static int cmd_write(struct client *c, char **a)
{
    FILE *in = fopen(a[1], "rb");
    if (!in)
        return fail(c, "%s: %s", a[1], strerror(errno));
    struct fuse_entry_out e;
    uint64_t fh;
    int err = vu_fuse_create_file(&c->fs, ROOT, a[0], 0644, &e, &fh);
    if (err) {
        fclose(in);
        return fail(c, "CREATE %s: %s", a[0], why(c, err));
    }
    static uint8_t buf[CHUNK];
    uint64_t off = 0;
    size_t n;
    while (err == 0 && (n = fread(buf, 1, chunk_size(c), in)) > 0) {
        uint32_t written = 0;
        err = vu_fuse_write(&c->fs, e.nodeid, fh, off, buf, (uint32_t)n, &written);
        if (err == 0 && written != n)
            err = fail(c, "WRITE at %llu: %u of %zu bytes", (unsigned long long)off, written, n);
        else if (err)
            err = fail(c, "WRITE at %llu: %s", (unsigned long long)off, why(c, err));
        off += n;
    }
    fclose(in);
    if (err || close_file(c, e.nodeid, fh))
        return -1;
    printf("ok write %s %llu bytes\n", a[0], (unsigned long long)off);
    return 0;
}

static int cmd_read(struct client *c, char **a)
{
    struct fuse_entry_out e;
    uint64_t fh;
    if (open_name(c, a[0], O_RDONLY, &e, &fh))
        return -1;
    FILE *out = fopen(a[1], "wb");
    if (!out)
        return fail(c, "%s: %s", a[1], strerror(errno));
    static uint8_t buf[CHUNK];
    uint64_t off = 0;
    uint32_t got = chunk_size(c);
    int err = 0;
    while (err == 0 && got == chunk_size(c)) {
        err = vu_fuse_read(&c->fs, e.nodeid, fh, off, chunk_size(c), buf, &got);
        if (err == 0 && fwrite(buf, 1, got, out) != got)
            err = -EIO;
        off += got;
    }
    fclose(out);
    if (err)
        return fail(c, "READ at %llu: %s", (unsigned long long)off, why(c, err));
    if (close_file(c, e.nodeid, fh))
        return -1;
    printf("ok read %s %llu bytes\n", a[0], (unsigned long long)off);
    return 0;
}

static int cmd_getattr(struct client *c, char **a)
{
    (void)a;
    struct fuse_attr_out attr;
    int err = vu_fuse_getattr(&c->fs, ROOT, &attr);
    if (err)
        return fail(c, "GETATTR of the root: %s", why(c, err));
    if (!S_ISDIR(attr.attr.mode))
        return fail(c, "the root has mode %o", attr.attr.mode);
    printf("ok getattr root mode %o\n", attr.attr.mode);
    return 0;
}

/* Opens NAME and keeps the handle (as a guest that still has it open). */
static int cmd_open(struct client *c, char **a)
{
    struct fuse_entry_out e;
    uint64_t fh;
    if (open_name(c, a[0], O_RDONLY, &e, &fh))
        return -1;
    printf("ok open %s: node %llu handle %llu\n", a[0], (unsigned long long)e.nodeid,
           (unsigned long long)fh);
    return 0;
}

/* ---- FORGET ------------------------------------------------------------ */

/* Two lookups, FORGET of one: the node stays; FORGET of the other: gone. */
static int cmd_forget(struct client *c, char **a)
{
    struct fuse_entry_out e1, e2;
    struct fuse_attr_out attr;
    if (lookup(c, a[0], &e1) || lookup(c, a[0], &e2))
        return -1;
    if (e1.nodeid != e2.nodeid)
        return fail(c, "two lookups of %s gave nodes %llu and %llu", a[0],
                    (unsigned long long)e1.nodeid, (unsigned long long)e2.nodeid);
    if (forget(c, e1.nodeid, 1))
        return -1;
    int err = vu_fuse_getattr(&c->fs, e1.nodeid, &attr);
    if (err)
        return fail(c, "GETATTR after forgetting 1 of 2 lookups: %s", why(c, err));
    if (forget(c, e1.nodeid, 1))
        return -1;
    err = vu_fuse_getattr(&c->fs, e1.nodeid, &attr);
    if (err == 0 || err == VU_FUSE_BROKEN)
        return fail(c, "GETATTR of a forgotten node: %s", err ? why(c, err) : "succeeded");
    printf("ok forget %s: node %llu gone after its last FORGET (%s)\n", a[0],
           (unsigned long long)e1.nodeid, strerror(-err));
    return 0;
}

static int cmd_batch_forget(struct client *c, char **a)
{
    struct fuse_entry_out e;
    for (int i = 0; i < 3; i++)
        if (lookup(c, a[0], &e))
            return -1;
    struct {
        struct fuse_batch_forget_in in;
        struct fuse_forget_one one;
    } arg = { .in = { .count = 1 }, .one = { .nodeid = e.nodeid, .nlookup = 3 } };
    struct vu_fuse_req *r = vu_fuse_submit(&c->fs, VU_HIPRIO, FUSE_BATCH_FORGET, 0, &arg,
                                           sizeof(arg), NULL, 0, 0);
    if (!r || vu_fuse_wait(&c->fs, r, c->fe.opt.timeout_ms) < 0)
        return fail(c, "BATCH_FORGET: %s", c->fe.error);
    vu_fuse_put(r);
    struct fuse_attr_out attr;
    int err = vu_fuse_getattr(&c->fs, e.nodeid, &attr);
    if (err == 0 || err == VU_FUSE_BROKEN)
        return fail(c, "GETATTR of a forgotten node: %s", err ? why(c, err) : "succeeded");
    printf("ok batch-forget %s\n", a[0]);
    return 0;
}

/* ---- out of order: a SETLKW waiting for a lock the host holds ---------- */

struct lock_wait {
    struct fuse_entry_out e;
    uint64_t fh;
    int host_fd;
    struct vu_fuse_req *req;
};

static int host_lock(struct client *c, const char *path, int *fd)
{
    *fd = open(path, O_RDWR | O_CLOEXEC);
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
    if (*fd < 0 || fcntl(*fd, F_OFD_SETLK, &fl) < 0)
        return fail(c, "locking %s on the host: %s", path, strerror(errno));
    return 0;
}

/* Opens NAME, locks HOST_PATH on the host, sends SETLKW and checks that it
 * waits while a GETATTR on the same queue completes. */
static int start_lock_wait(struct client *c, const char *name, const char *host_path,
                           struct lock_wait *w)
{
    if (open_name(c, name, O_RDWR, &w->e, &w->fh) || host_lock(c, host_path, &w->host_fd))
        return -1;
    struct fuse_lk_in lk = {
        .fh = w->fh, .owner = 0x5eed,
        .lk = { .start = 0, .end = INT64_MAX, .type = F_WRLCK, .pid = (uint32_t)getpid() },
    };
    w->req = vu_fuse_submit(&c->fs, VU_REQUEST_QUEUE, FUSE_SETLKW, w->e.nodeid, &lk, sizeof(lk),
                            NULL, 0, sizeof(struct fuse_out_header));
    if (!w->req)
        return fail(c, "SETLKW: %s", c->fe.error);
    usleep(200 * 1000);
    if (vu_fuse_harvest(&c->fs, VU_REQUEST_QUEUE) < 0 || w->req->done)
        return fail(c, "SETLKW did not wait for the lock the host holds (%s)",
                    w->req->done ? why(c, vu_fuse_reply(&c->fs, w->req, NULL, NULL)) : c->fe.error);
    struct fuse_attr_out attr;
    int err = vu_fuse_getattr(&c->fs, w->e.nodeid, &attr);
    if (err)
        return fail(c, "GETATTR behind a waiting SETLKW: %s", why(c, err));
    if (w->req->done)
        return fail(c, "SETLKW completed although the host still holds the lock");
    return 0;
}

static int finish_lock_wait(struct client *c, struct lock_wait *w, int want)
{
    int err = vu_fuse_wait(&c->fs, w->req, c->fe.opt.timeout_ms);
    if (err == 0)
        err = vu_fuse_reply(&c->fs, w->req, NULL, NULL);
    if (err != want)
        return fail(c, "SETLKW ended with %s, expected %s", why(c, err),
                    want ? strerror(-want) : "success");
    vu_fuse_put(w->req);
    close(w->host_fd);
    return close_file(c, w->e.nodeid, w->fh);
}

static int cmd_lock_order(struct client *c, char **a)
{
    struct lock_wait w;
    if (start_lock_wait(c, a[0], a[1], &w))
        return -1;
    struct flock fl = { .l_type = F_UNLCK, .l_whence = SEEK_SET };
    fcntl(w.host_fd, F_OFD_SETLK, &fl);
    if (finish_lock_wait(c, &w, 0))
        return -1;
    printf("ok lock-order %s: GETATTR completed before the waiting SETLKW\n", a[0]);
    return 0;
}

static int cmd_lock_interrupt(struct client *c, char **a)
{
    struct lock_wait w;
    if (start_lock_wait(c, a[0], a[1], &w))
        return -1;
    struct fuse_interrupt_in in = { .unique = w.req->unique };
    struct vu_fuse_req *r = vu_fuse_submit(&c->fs, VU_HIPRIO, FUSE_INTERRUPT, 0, &in, sizeof(in),
                                           NULL, 0, 0);
    if (!r || vu_fuse_wait(&c->fs, r, c->fe.opt.timeout_ms) < 0)
        return fail(c, "INTERRUPT on the hiprio queue: %s", c->fe.error);
    vu_fuse_put(r);
    if (finish_lock_wait(c, &w, -EINTR))
        return -1;
    printf("ok lock-interrupt %s: INTERRUPT on hiprio ended the waiting SETLKW\n", a[0]);
    return 0;
}

/* ---- rings ------------------------------------------------------------- */

/* GET_VRING_BASE stops the ring: a request queued then is not served until
 * the ring is set up again from the base the backend reported. */
static int cmd_ring_restart(struct client *c, char **a)
{
    (void)a;
    struct vu_ring *q = &c->fe.ring[VU_REQUEST_QUEUE];
    uint32_t base;
    int r = vu_stop_ring(&c->fe, VU_REQUEST_QUEUE, &base);
    if (r < 0)
        return fail(c, "GET_VRING_BASE: %s", c->fe.error);
    if (base != q->avail_idx)
        return fail(c, "GET_VRING_BASE says %u, we published %u (all served)", base, q->avail_idx);
    struct fuse_getattr_in in = { 0 };
    struct vu_fuse_req *req = vu_fuse_submit(&c->fs, VU_REQUEST_QUEUE, FUSE_GETATTR, ROOT, &in,
                                             sizeof(in), NULL, 0, 256);
    if (!req)
        return fail(c, "GETATTR: %s", c->fe.error);
    vu_ring_notify(q, true);
    if (vu_fuse_wait(&c->fs, req, 300) == 0)
        return fail(c, "a stopped ring was still served");
    r = vu_setup_ring(&c->fe, VU_REQUEST_QUEUE, (uint16_t)base);
    if (r < 0)
        return fail(c, "restarting the ring: %s", c->fe.error);
    if (vu_fuse_wait(&c->fs, req, c->fe.opt.timeout_ms) < 0)
        return fail(c, "the request queued while stopped: %s", c->fe.error);
    int err = vu_fuse_reply(&c->fs, req, NULL, NULL);
    vu_fuse_put(req);
    if (err)
        return fail(c, "GETATTR after the restart: %s", why(c, err));
    printf("ok ring-restart: stopped at %u, the queued request served after the restart\n", base);
    return 0;
}

/* Fds of the backend on the shared directory's filesystem. */
static int backend_files(struct client *c)
{
    struct stat dir;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)c->fe.backend_pid);
    DIR *d = opendir(path);
    if (!d || stat(c->shared_dir, &dir) < 0) {
        if (d)
            closedir(d);
        return -1;
    }
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        char fd_path[PATH_MAX];
        struct stat st;
        snprintf(fd_path, sizeof(fd_path), "%s/%s", path, de->d_name);
        if (de->d_name[0] != '.' && stat(fd_path, &st) == 0 && st.st_dev == dir.st_dev)
            n++;
    }
    closedir(d);
    return n;
}

#define RESET_FILES 4

static int open_files(struct client *c, const char *name, uint64_t *nodes)
{
    struct fuse_entry_out e;
    if (lookup(c, name, &e))
        return -1;
    for (int i = 0; i < RESET_FILES; i++) {
        uint64_t fh;
        int err = vu_fuse_open(&c->fs, e.nodeid, O_RDONLY, &fh);
        if (err)
            return fail(c, "OPEN %s: %s", name, why(c, err));
        nodes[i] = e.nodeid;
    }
    return 0;
}

/* RESET_DEVICE drops the session: handles the guest left open are closed;
 * the device then starts again like after a guest reboot. */
static int cmd_reset_device(struct client *c, char **a)
{
    if (!c->shared_dir || c->fe.backend_pid <= 0)
        return fail(c, "needs --shared-dir and the backend's pid");
    uint64_t nodes[RESET_FILES];
    if (open_files(c, a[0], nodes))
        return -1;
    int before = backend_files(c);
    if (vu_reset_device(&c->fe) < 0)
        return fail(c, "RESET_DEVICE: %s", c->fe.error);
    /* The backend closes them as it ends the session: up to 10 s, for a
     * loaded machine (a leak never gets there). */
    int after = before;
    for (int tries = 0; tries < 500 && after > before - RESET_FILES; tries++) {
        usleep(20 * 1000);
        after = backend_files(c);
    }
    if (after > before - RESET_FILES)
        return fail(c, "%d files open before RESET_DEVICE, %d after (%d handles were open)",
                    before, after, RESET_FILES);
    for (unsigned i = 0; i < c->fe.nrings; i++)
        vu_ring_reset(&c->fe.ring[i]);
    if (vu_start(&c->fe) < 0)
        return fail(c, "starting again after RESET_DEVICE: %s", c->fe.error);
    int err = vu_fuse_init(&c->fs);
    if (err)
        return fail(c, "INIT after RESET_DEVICE: %s", why(c, err));
    struct fuse_attr_out attr;
    err = vu_fuse_getattr(&c->fs, ROOT, &attr);
    if (err)
        return fail(c, "GETATTR after RESET_DEVICE: %s", why(c, err));
    printf("ok reset-device: %d files open before, %d after; serving again\n", before, after);
    return 0;
}

/* A guest reboot: GET_VRING_BASE of every ring, fresh rings, INIT again. */
static int cmd_reboot(struct client *c, char **a)
{
    (void)a;
    if (vu_restart(&c->fe) < 0)
        return fail(c, "%s", c->fe.error);
    int err = vu_fuse_init(&c->fs);
    if (err)
        return fail(c, "INIT after the restart: %s", why(c, err));
    printf("ok reboot\n");
    return 0;
}

/* Memory hot-unplug and plug: REM_MEM_REG of the region holding the
 * request buffers, ADD_MEM_REG of it again, requests served from it. */
static int cmd_hotplug(struct client *c, char **a)
{
    (void)a;
    struct fuse_attr_out attr;
    if (vu_remove_region(&c->fe, 1) < 0)
        return fail(c, "REM_MEM_REG: %s", c->fe.error);
    if (vu_add_region(&c->fe, 1) < 0)
        return fail(c, "ADD_MEM_REG: %s", c->fe.error);
    int err = vu_fuse_getattr(&c->fs, ROOT, &attr);
    if (err)
        return fail(c, "GETATTR from the region added again: %s", why(c, err));
    printf("ok hotplug: region 1 removed, added again, served from\n");
    return 0;
}

/* A GETATTR on every request queue at once. */
static int cmd_queues(struct client *c, char **a)
{
    (void)a;
    struct vu_fuse_req *reqs[VU_MAX_RINGS];
    struct fuse_getattr_in in = { 0 };
    for (unsigned q = 1; q < c->fe.nrings; q++) {
        reqs[q] = vu_fuse_submit(&c->fs, q, FUSE_GETATTR, ROOT, &in, sizeof(in), NULL, 0, 256);
        if (!reqs[q])
            return fail(c, "queue %u: %s", q, c->fe.error);
    }
    for (unsigned q = 1; q < c->fe.nrings; q++) {
        if (vu_fuse_wait(&c->fs, reqs[q], c->fe.opt.timeout_ms) < 0)
            return fail(c, "queue %u: %s", q, c->fe.error);
        int err = vu_fuse_reply(&c->fs, reqs[q], NULL, NULL);
        vu_fuse_put(reqs[q]);
        if (err)
            return fail(c, "GETATTR on queue %u: %s", q, why(c, err));
    }
    printf("ok queues: %u request queues served\n", c->fe.nrings - 1);
    return 0;
}

/* Waits until stdin reaches EOF or the backend closes the connection. */
static int cmd_hold(struct client *c, char **a)
{
    (void)a;
    printf("ready\n");
    fflush(stdout);
    struct pollfd p[2] = { { .fd = STDIN_FILENO, .events = POLLIN },
                           { .fd = c->fe.sock, .events = POLLIN | POLLRDHUP } };
    for (;;) {
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            return fail(c, "poll: %s", strerror(errno));
        if (p[1].revents && vu_peer_closed(&c->fe, 0)) {
            printf("ok hold: the backend closed the connection\n");
            return 0;
        }
        char buf[256];
        if (p[0].revents && read(STDIN_FILENO, buf, sizeof(buf)) <= 0) {
            printf("ok hold: stdin closed\n");
            return 0;
        }
    }
}

static int cmd_pid(struct client *c, char **a)
{
    (void)a;
    printf("ok pid %d\n", (int)c->fe.backend_pid);
    return 0;
}

struct command {
    const char *name;
    int nargs;
    int (*run)(struct client *c, char **args);
    const char *help;
};

static const struct command commands[] = {
    { "getattr", 0, cmd_getattr, "GETATTR of the root" },
    { "write", 2, cmd_write, "write:NAME:HOSTFILE  CREATE NAME, WRITE HOSTFILE's bytes into it" },
    { "read", 2, cmd_read, "read:NAME:HOSTFILE  READ all of NAME into HOSTFILE" },
    { "open", 1, cmd_open, "open:NAME  LOOKUP and OPEN NAME, keep the handle" },
    { "forget", 1, cmd_forget, "forget:NAME  two LOOKUPs, FORGET 1 (node stays), FORGET 1 (gone)" },
    { "batch-forget", 1, cmd_batch_forget, "batch-forget:NAME  3 LOOKUPs, one BATCH_FORGET" },
    { "lock-order", 2, cmd_lock_order,
      "lock-order:NAME:HOSTPATH  SETLKW waits on a host lock while GETATTR completes" },
    { "lock-interrupt", 2, cmd_lock_interrupt,
      "lock-interrupt:NAME:HOSTPATH  INTERRUPT on hiprio ends a waiting SETLKW (EINTR)" },
    { "ring-restart", 0, cmd_ring_restart, "GET_VRING_BASE stops queue 1; restart serves it" },
    { "reset-device", 1, cmd_reset_device,
      "reset-device:NAME  open NAME 4 times, RESET_DEVICE closes them, serve again" },
    { "reboot", 0, cmd_reboot, "GET_VRING_BASE of all rings, fresh rings, INIT" },
    { "queues", 0, cmd_queues, "a GETATTR on every request queue at once" },
    { "hotplug", 0, cmd_hotplug, "REM_MEM_REG and ADD_MEM_REG of the buffers' region, then GETATTR" },
    { "pid", 0, cmd_pid, "print the backend's pid (SO_PEERCRED)" },
    { "hold", 0, cmd_hold, "print ready; wait for stdin EOF or the backend to close" },
};

static void usage(FILE *f)
{
    fprintf(f, "usage: vhost-client [--queues N] [--queue-size N] [--no-indirect] "
               "[--no-event-idx]\n"
               "                    [--mem-slots] [--split] [--timeout MS] [--shared-dir DIR]\n"
               "                    SOCKET COMMAND...\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-16s %s\n", commands[i].name, commands[i].help);
}

static int run_command(struct client *c, char *text)
{
    char *args[4] = { 0 };
    int n = 0;
    char *name = strtok(text, ":");
    for (char *t; n < 4 && (t = strtok(NULL, ":"));)
        args[n++] = t;
    c->cmd = name ? name : "";
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(commands[i].name, c->cmd) != 0)
            continue;
        if (n != commands[i].nargs)
            return fail(c, "takes %d arguments separated by ':', got %d", commands[i].nargs, n);
        int r = commands[i].run(c, args);
        fflush(stdout);
        return r;
    }
    return fail(c, "unknown command (see --help)");
}

static int parse_options(int argc, char **argv, struct vu_options *o, struct client *c)
{
    enum { O_QUEUES = 1, O_QSIZE, O_NOIND, O_NOEVT, O_SLOTS, O_SPLIT, O_TIMEOUT, O_DIR, O_HELP };
    static const struct option longopts[] = {
        { "queues", required_argument, NULL, O_QUEUES },
        { "queue-size", required_argument, NULL, O_QSIZE },
        { "no-indirect", no_argument, NULL, O_NOIND },
        { "no-event-idx", no_argument, NULL, O_NOEVT },
        { "mem-slots", no_argument, NULL, O_SLOTS },
        { "split", no_argument, NULL, O_SPLIT },
        { "timeout", required_argument, NULL, O_TIMEOUT },
        { "shared-dir", required_argument, NULL, O_DIR },
        { "help", no_argument, NULL, O_HELP },
        { 0 },
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (opt) {
        case O_QUEUES: o->request_queues = (unsigned)atoi(optarg); break;
        case O_QSIZE: o->queue_size = (uint16_t)atoi(optarg); break;
        case O_NOIND: o->indirect = false; break;
        case O_NOEVT: o->event_idx = false; break;
        case O_SLOTS: o->mem_slots = true; break;
        case O_SPLIT: c->fs.split_pages = true; break;
        case O_TIMEOUT: o->timeout_ms = atoi(optarg); break;
        case O_DIR: c->shared_dir = optarg; break;
        case O_HELP: usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
    }
    if (argc - optind < 1) {
        usage(stderr);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static struct client c;
    struct vu_options o;
    vu_options_default(&o);
    if (parse_options(argc, argv, &o, &c) < 0)
        return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    bool split = c.fs.split_pages;
    c.cmd = "setup";
    if (vu_setup(&c.fe, argv[optind], &o) < 0) {
        fail(&c, "%s", c.fe.error);
        return 1;
    }
    if (vu_fuse_create(&c.fs, &c.fe, 8, SLOT_IN, SLOT_OUT) < 0) {
        fail(&c, "%s", c.fe.error);
        return 1;
    }
    c.fs.split_pages = split;
    c.cmd = "init";
    int err = vu_fuse_init(&c.fs);
    if (err) {
        fail(&c, "%s", why(&c, err));
        return 1;
    }
    printf("ok init: FUSE %u.%u, max_write %u, %u rings, features %#llx, protocol %#llx\n",
           c.fs.init.major, c.fs.init.minor, c.fs.init.max_write, c.fe.nrings,
           (unsigned long long)c.fe.features, (unsigned long long)c.fe.protocol);
    int rc = 0;
    for (int i = optind + 1; i < argc && rc == 0; i++)
        rc = run_command(&c, argv[i]) < 0 ? 1 : 0;
    unsigned missed = 0;
    for (unsigned i = 0; i < c.fe.nrings; i++)
        missed += c.fe.ring[i].missed_notifications;
    if (rc == 0 && missed) {
        c.cmd = "notifications";
        fail(&c, "%u used entries came without a call", missed);
        rc = 1;
    }
    vu_fuse_destroy(&c.fs);
    vu_close(&c.fe);
    return rc;
}
