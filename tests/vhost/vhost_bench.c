/*
 * vhost_bench.c - requests per second per core of a vhost-user-fs backend,
 * no VM needed: the test frontend keeps DEPTH requests in flight on each
 * of QUEUES request queues for SECONDS and reads the backend's CPU time
 * (utime + stime, /proc/PID/stat) around the run.
 *
 *   vhost-bench [--ops getattr,read] [--queues 1,2] [--depth 1,16]
 *               [--seconds S] [--file NAME] [--tsv] -- BACKEND [ARGS...]
 *
 * BACKEND is started once per row ("@SOCKET@" in ARGS is the socket path)
 * and must serve the export in which NAME (for READ) exists; READs are
 * 4 KiB at random 4 KiB-aligned offsets of it.  "req/s/core" is requests
 * divided by backend CPU seconds: the figure that does not depend on how
 * many cores the machine lends the backend.  The backend's CPU time is
 * that of the started process and all its descendants.  The frontend's own CPU time
 * is printed too, to show it is not the bottleneck.
 */
#include "vu_backend.h"
#include "vu_fuse.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define BLOCK 4096u
#define MAX_LIST 8
#define MAX_IN_FLIGHT 512
#define STALL_MS 5000

enum op { OP_GETATTR, OP_READ };

struct settings {
    char **argv;
    enum op ops[MAX_LIST];
    unsigned nops;
    unsigned queues[MAX_LIST], nqueues;
    unsigned depths[MAX_LIST], ndepths;
    double seconds;
    const char *file;
    bool tsv;
    char workdir[PATH_MAX - 32];
};

struct row {
    enum op op;
    unsigned queues, depth;
    uint64_t requests;
    double wall, backend_cpu, frontend_cpu;
    char error[600];
};

struct run {
    struct vu_frontend fe;
    struct vu_fuse fs;
    enum op op;
    uint64_t nodeid, fh, blocks;
    uint64_t rng;
    uint64_t completed;
};

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double self_cpu(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_utime.tv_sec + (double)u.ru_utime.tv_usec / 1e6 +
           (double)u.ru_stime.tv_sec + (double)u.ru_stime.tv_usec / 1e6;
}

static const char *op_name(enum op op)
{
    return op == OP_READ ? "read-4k" : "getattr";
}

/* ---- the request loop -------------------------------------------------------- */

static uint64_t next_random(struct run *r)
{
    r->rng ^= r->rng << 13;
    r->rng ^= r->rng >> 7;
    r->rng ^= r->rng << 17;
    return r->rng;
}

static bool submit(struct run *r, unsigned q)
{
    if (r->op == OP_GETATTR) {
        struct fuse_getattr_in in = { 0 };
        return vu_fuse_submit(&r->fs, q, FUSE_GETATTR, r->nodeid, &in, sizeof(in), NULL, 0,
                              sizeof(struct fuse_out_header) + sizeof(struct fuse_attr_out));
    }
    struct fuse_read_in in = { .fh = r->fh, .offset = (next_random(r) % r->blocks) * BLOCK,
                               .size = BLOCK };
    return vu_fuse_submit(&r->fs, q, FUSE_READ, r->nodeid, &in, sizeof(in), NULL, 0,
                          sizeof(struct fuse_out_header) + BLOCK);
}

/* Checks one completed request and sends the next in its place. */
static int complete(struct run *r, struct vu_fuse_req *req, bool again)
{
    uint32_t len;
    int err = vu_fuse_reply(&r->fs, req, NULL, &len);
    unsigned q = req->ring;
    vu_fuse_put(req);
    if (err)
        return err == VU_FUSE_BROKEN ? -1 : vu_fail(&r->fe, -1, "%s: %s", op_name(r->op), strerror(-err));
    if (r->op == OP_READ && len != BLOCK)
        return vu_fail(&r->fe, -1, "READ of 4 KiB returned %u bytes", len);
    r->completed++;
    if (again && !submit(r, q))
        return -1;
    return 0;
}

/* Handles what came back on every queue; returns how many, or -1. */
static int reap(struct run *r, bool again)
{
    int n = 0;
    for (unsigned q = 1; q < r->fe.nrings; q++) {
        struct vu_used u;
        while (vu_ring_get_used(&r->fe.ring[q], &u) == 1) {
            if (!u.known)
                return vu_fail(&r->fe, -1, "queue %u returned descriptor %u, not in flight", q, u.id);
            struct vu_fuse_req *req = u.token;
            req->used_len = u.len;
            req->done = true;
            if (complete(r, req, again) < 0)
                return -1;
            n++;
        }
    }
    return n;
}

/* Waits for a call on any request queue. */
static int wait_calls(struct run *r)
{
    struct pollfd p[VU_MAX_RINGS];
    for (unsigned q = 1; q < r->fe.nrings; q++) {
        vu_ring_want_call(&r->fe.ring[q]);
        if (vu_ring_has_used(&r->fe.ring[q]))
            return 0;
        p[q - 1] = (struct pollfd){ .fd = r->fe.ring[q].call_fd, .events = POLLIN };
    }
    int n = poll(p, r->fe.nrings - 1, STALL_MS);
    if (n == 0)
        return vu_fail(&r->fe, -1, "no completion for %d s", STALL_MS / 1000);
    for (unsigned q = 1; q < r->fe.nrings; q++)
        if (p[q - 1].revents)
            vu_ring_drain_call(&r->fe.ring[q]);
    return 0;
}

static int drive(struct run *r, unsigned depth, double seconds, uint64_t *done)
{
    for (unsigned q = 1; q < r->fe.nrings; q++)
        for (unsigned i = 0; i < depth; i++)
            if (!submit(r, q))
                return -1;
    double end = now_s() + seconds;
    uint64_t start = r->completed;
    while (now_s() < end) {
        int n = reap(r, true);
        if (n < 0 || (n == 0 && wait_calls(r) < 0))
            return -1;
    }
    *done = r->completed - start;
    /* Let the last ones come back before the next phase. */
    uint64_t in_flight = (uint64_t)depth * (r->fe.nrings - 1);
    for (uint64_t got = 0; got < in_flight;) {
        int n = reap(r, false);
        if (n < 0 || (n == 0 && wait_calls(r) < 0))
            return -1;
        got += (uint64_t)n;
    }
    return 0;
}

/* ---- one row ------------------------------------------------------------------- */

static int open_target(struct run *r, const struct settings *s)
{
    r->nodeid = FUSE_ROOT_ID;
    if (r->op != OP_READ)
        return 0;
    struct fuse_entry_out e;
    int err = vu_fuse_lookup(&r->fs, FUSE_ROOT_ID, s->file, &e);
    if (err == 0)
        err = vu_fuse_open(&r->fs, e.nodeid, O_RDONLY, &r->fh);
    if (err)
        return err == VU_FUSE_BROKEN ? -1 : vu_fail(&r->fe, -1, "%s: %s", s->file, strerror(-err));
    r->nodeid = e.nodeid;
    r->blocks = e.attr.size / BLOCK;
    if (r->blocks == 0)
        return vu_fail(&r->fe, -1, "%s is smaller than 4 KiB", s->file);
    return 0;
}

static int measure(struct run *r, const struct settings *s, pid_t backend, struct row *row)
{
    struct vu_options o;
    vu_options_default(&o);
    o.request_queues = row->queues;
    o.queue_size = 256;
    o.timeout_ms = STALL_MS;
    char sock[PATH_MAX];
    snprintf(sock, sizeof(sock), "%s/b.sock", s->workdir);
    unsigned slots = row->queues * row->depth;
    if (slots > MAX_IN_FLIGHT || row->depth > o.queue_size)
        return vu_fail(&r->fe, -1, "at most %d requests in flight", MAX_IN_FLIGHT);
    if (vu_setup(&r->fe, sock, &o) < 0 ||
        vu_fuse_create(&r->fs, &r->fe, slots, 2 * BLOCK, 2 * BLOCK) < 0)
        return -1;
    int err = vu_fuse_init(&r->fs);
    if (err)
        return err == VU_FUSE_BROKEN ? -1 : vu_fail(&r->fe, -1, "INIT: %s", strerror(-err));
    if (open_target(r, s) < 0)
        return -1;
    uint64_t warm;
    if (drive(r, row->depth, s->seconds / 5, &warm) < 0)
        return -1;
    double cpu0, cpu1, self0 = self_cpu(), t0 = now_s();
    if (vu_process_tree_cpu(backend, &cpu0) < 0)
        return vu_fail(&r->fe, -1, "cannot read the CPU time of pid %d", (int)backend);
    if (drive(r, row->depth, s->seconds, &row->requests) < 0)
        return -1;
    row->wall = now_s() - t0;
    row->frontend_cpu = self_cpu() - self0;
    if (vu_process_tree_cpu(backend, &cpu1) < 0)
        return vu_fail(&r->fe, -1, "cannot read the CPU time of pid %d", (int)backend);
    row->backend_cpu = cpu1 - cpu0;
    return 0;
}

static void run_row(const struct settings *s, struct row *row)
{
    static struct run r;
    memset(&r, 0, sizeof(r));
    r.fe.sock = -1;
    r.fe.mem.fd = -1;
    r.op = row->op;
    r.rng = 0x9e3779b97f4a7c15ull;
    char sock[PATH_MAX], log[PATH_MAX];
    snprintf(sock, sizeof(sock), "%s/b.sock", s->workdir);
    snprintf(log, sizeof(log), "%s/backend.log", s->workdir);
    struct vu_backend b;
    if (vu_backend_start(&b, s->argv, sock, log) < 0) {
        snprintf(row->error, sizeof(row->error), "cannot start the backend: %s", strerror(errno));
        return;
    }
    if (measure(&r, s, b.pid, row) < 0)
        snprintf(row->error, sizeof(row->error), "%s", r.fe.error);
    vu_fuse_destroy(&r.fs);
    vu_close(&r.fe);
    if (!vu_backend_wait(&b, 5000))
        vu_backend_kill(&b);
    unlink(sock);
}

/* ---- output -------------------------------------------------------------------- */

static void print_row(const struct settings *s, const struct row *row)
{
    if (s->tsv) {
        printf("%s\t%u\t%u\t%llu\t%.3f\t%.3f\t%.3f\t%s\n", op_name(row->op), row->queues,
               row->depth, (unsigned long long)row->requests, row->wall, row->backend_cpu,
               row->frontend_cpu, row->error[0] ? row->error : "-");
        return;
    }
    if (row->error[0]) {
        printf("%-8s %6u %6u  %s\n", op_name(row->op), row->queues, row->depth, row->error);
        return;
    }
    double rate = row->wall > 0 ? (double)row->requests / row->wall : 0;
    double per_core = row->backend_cpu > 0 ? (double)row->requests / row->backend_cpu : 0;
    printf("%-8s %6u %6u %10llu %9.0f %12.2f %12.0f %12.2f\n", op_name(row->op), row->queues,
           row->depth, (unsigned long long)row->requests, rate, row->backend_cpu, per_core,
           row->frontend_cpu);
}

static unsigned parse_list(const char *text, unsigned *out)
{
    unsigned n = 0;
    char *copy = strdup(text);
    for (char *t = strtok(copy, ","); t && n < MAX_LIST; t = strtok(NULL, ","))
        out[n++] = (unsigned)atoi(t);
    free(copy);
    return n;
}

static int parse_ops(const char *text, struct settings *s)
{
    char *copy = strdup(text);
    s->nops = 0;
    for (char *t = strtok(copy, ","); t && s->nops < MAX_LIST; t = strtok(NULL, ",")) {
        if (strcmp(t, "getattr") == 0)
            s->ops[s->nops++] = OP_GETATTR;
        else if (strcmp(t, "read") == 0)
            s->ops[s->nops++] = OP_READ;
        else {
            fprintf(stderr, "vhost-bench: unknown op %s (getattr, read)\n", t);
            free(copy);
            return -1;
        }
    }
    free(copy);
    return 0;
}

static int parse(int argc, char **argv, struct settings *s)
{
    enum { O_OPS = 1, O_QUEUES, O_DEPTH, O_SECONDS, O_FILE, O_TSV, O_HELP };
    static const struct option longopts[] = {
        { "ops", required_argument, NULL, O_OPS },
        { "queues", required_argument, NULL, O_QUEUES },
        { "depth", required_argument, NULL, O_DEPTH },
        { "seconds", required_argument, NULL, O_SECONDS },
        { "file", required_argument, NULL, O_FILE },
        { "tsv", no_argument, NULL, O_TSV },
        { "help", no_argument, NULL, O_HELP },
        { 0 },
    };
    const char *usage = "usage: vhost-bench [--ops getattr,read] [--queues 1,2] [--depth 1,16] "
                        "[--seconds S] [--file NAME] [--tsv] -- BACKEND [ARGS...]\n";
    s->ops[0] = OP_GETATTR;
    s->ops[1] = OP_READ;
    s->nops = 2;
    s->nqueues = parse_list("1", s->queues);
    s->ndepths = parse_list("1,16", s->depths);
    s->seconds = 3;
    s->file = "bench.dat";
    for (int opt; (opt = getopt_long(argc, argv, "", longopts, NULL)) != -1;) {
        switch (opt) {
        case O_OPS: if (parse_ops(optarg, s) < 0) return -1; break;
        case O_QUEUES: s->nqueues = parse_list(optarg, s->queues); break;
        case O_DEPTH: s->ndepths = parse_list(optarg, s->depths); break;
        case O_SECONDS: s->seconds = atof(optarg); break;
        case O_FILE: s->file = optarg; break;
        case O_TSV: s->tsv = true; break;
        case O_HELP: fputs(usage, stdout); exit(0);
        default: fputs(usage, stderr); return -1;
        }
    }
    if (optind >= argc || s->seconds <= 0) {
        fputs(usage, stderr);
        return -1;
    }
    s->argv = argv + optind;
    return 0;
}

int main(int argc, char **argv)
{
    static struct settings s;
    if (parse(argc, argv, &s) < 0)
        return 2;
    snprintf(s.workdir, sizeof(s.workdir), "/tmp/vhost-bench-XXXXXX");
    if (!mkdtemp(s.workdir)) {
        fprintf(stderr, "vhost-bench: %s: %s\n", s.workdir, strerror(errno));
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!s.tsv)
        printf("%-8s %6s %6s %10s %9s %12s %12s %12s\n", "op", "queues", "depth", "requests",
               "req/s", "backend CPU", "req/s/core", "frontend CPU");
    int failed = 0;
    for (unsigned o = 0; o < s.nops; o++)
        for (unsigned q = 0; q < s.nqueues; q++)
            for (unsigned d = 0; d < s.ndepths; d++) {
                struct row row = { .op = s.ops[o], .queues = s.queues[q], .depth = s.depths[d] };
                run_row(&s, &row);
                print_row(&s, &row);
                failed |= row.error[0] != '\0';
            }
    char log[PATH_MAX];
    snprintf(log, sizeof(log), "%s/backend.log", s.workdir);
    if (failed)
        fprintf(stderr, "vhost-bench: the last backend's log is %s\n", log);
    else {
        unlink(log);
        rmdir(s.workdir);
    }
    return failed ? 1 : 0;
}
