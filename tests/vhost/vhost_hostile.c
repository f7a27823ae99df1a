/*
 * vhost_hostile.c - malformed vhost-user input against a vhost-user-fs
 * backend; the backend must survive every case.
 *
 *   vhost-hostile [--strict] [--timeout MS] [--workdir DIR] [--case PATTERN]...
 *                 [--seed N] [--list] -- BACKEND [ARGS...]
 *
 * BACKEND runs once per case, "@SOCKET@" in its arguments replaced by the
 * socket path, e.g.
 *
 *   vhost-hostile -- fsbridged --socket-path=@SOCKET@ --shared-dir=/tmp/x
 *   vhost-hostile -- /usr/lib/qemu/virtiofsd --socket-path=@SOCKET@ -o source=/tmp/x
 *
 * A case passes when the backend did not crash (signal, sanitizer report),
 * did not write guest memory outside what the case allowed (the guards
 * between regions, the scratch bytes around the buffers), did not hang,
 * and either still answers a good request (on the same rings, or after a
 * guest-reset style restart of them) or closed the connection; and it
 * exits once the frontend is gone.  --strict also wants what a careful
 * backend does: a malformed chain fails that request only (it comes back
 * on the used ring and the ring keeps serving), every need_reply gets an
 * answer, exit status 0 after a normal disconnect.
 *
 * One line per case, a summary at the end; exit 1 when a case failed.
 * Backend logs of failed cases stay in the work directory.
 */
#include "hostile.h"
#include "vu_backend.h"

#include <errno.h>
#include <fnmatch.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define EXIT_WAIT_MS 5000
#define MAX_PATTERNS 64

struct config {
    char **argv;
    char workdir[PATH_MAX - 32];
    bool made_workdir;
    bool strict;
    int timeout_ms;
    uint64_t seed;
    const char *patterns[MAX_PATTERNS];
    unsigned npatterns;
};

enum outcome { OUT_SERVED, OUT_RESTARTED, OUT_CLOSED, OUT_UNRESPONSIVE, OUT_NOT_CHECKED };

/* ---- helpers for the cases (hostile.h) --------------------------------------- */

static void vnote(struct env *e, const char *fmt, va_list ap)
{
    size_t used = strlen(e->note);
    if (used < sizeof(e->note) - 1)
        vsnprintf(e->note + used, sizeof(e->note) - used, fmt, ap);
}

void note(struct env *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vnote(e, fmt, ap);
    va_end(ap);
}

int case_fail(struct env *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    e->note[0] = '\0';
    vnote(e, fmt, ap);
    va_end(ap);
    return CASE_FAILED;
}

int case_skip(struct env *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    e->note[0] = '\0';
    vnote(e, fmt, ap);
    va_end(ap);
    return CASE_SKIP;
}

static bool has_own_reply(uint32_t request)
{
    switch (request) {
    case VU_GET_FEATURES:
    case VU_GET_PROTOCOL_FEATURES:
    case VU_GET_VRING_BASE:
    case VU_GET_QUEUE_NUM:
    case VU_GET_MAX_MEM_SLOTS:
        return true;
    default:
        return false;
    }
}

static unsigned drain(struct env *e, int first_ms)
{
    unsigned got = 0;
    for (int wait = first_ms;; wait = 50) {
        struct vu_header h;
        uint8_t p[4096];
        int r = vu_recv(&e->fe, &h, p, sizeof(p), wait);
        if (r == -ETIMEDOUT)
            break;
        if (r < 0) {
            note(e, "%s; ", r == -ECONNRESET ? "closed" : e->fe.error);
            break;
        }
        got++;
        uint64_t v = 0;
        memcpy(&v, p, h.size < 8 ? h.size : 8);
        if (h.size == 8 && !has_own_reply(h.request))
            note(e, "%s %s; ", vu_request_name(h.request), v ? "NACK" : "ack");
        else
            note(e, "%s answered (%u bytes); ", vu_request_name(h.request), h.size);
    }
    return got;
}

void drain_replies(struct env *e, int first_ms)
{
    drain(e, first_ms);
}

int send_hostile(struct env *e, uint32_t request, uint32_t flags, const void *payload,
                 uint32_t size, const int *fds, unsigned nfds)
{
    bool ack = vu_has_protocol(&e->fe, VU_PROTOCOL_F_REPLY_ACK);
    if (flags == 0)
        flags = VU_VERSION | (ack ? VU_FLAG_NEED_REPLY : 0);
    if (vu_send(&e->fe, request, flags, payload, size, fds, nfds) < 0) {
        note(e, "sending %s: %s; ", vu_request_name(request), e->fe.error);
        return -ECONNRESET;
    }
    bool expect = (flags & VU_FLAG_NEED_REPLY) || has_own_reply(request);
    unsigned got = drain(e, expect ? 500 : 100);
    if (vu_peer_closed(&e->fe, 0))
        return -ECONNRESET;
    if (expect && got == 0) {
        e->unanswered = true;
        note(e, "%s not answered; ", vu_request_name(request));
    }
    return 0;
}

/* ---- one case ------------------------------------------------------------------ */

static int bring_up(struct env *e, enum stage stage)
{
    if (stage >= STAGE_OWNED) {
        if (vu_handshake(&e->fe) < 0)
            return -1;
        e->reached = STAGE_OWNED;
    }
    if (stage >= STAGE_STARTED) {
        if (vu_start(&e->fe) < 0)
            return -1;
        e->reached = STAGE_STARTED;
    }
    if (stage >= STAGE_RUNNING) {
        int err = vu_fuse_init(&e->fs);
        if (err)
            return err == VU_FUSE_BROKEN ? -1 : vu_fail(&e->fe, -1, "INIT: %s", strerror(-err));
        e->reached = STAGE_RUNNING;
    }
    return 0;
}

static const char *unmet_requirement(const struct env *e, const struct hcase *c)
{
    if ((c->flags & CASE_MEM_SLOTS) && !vu_has_protocol(&e->fe, VU_PROTOCOL_F_CONFIGURE_MEM_SLOTS))
        return "the backend does not offer CONFIGURE_MEM_SLOTS";
    if ((c->flags & CASE_RESET_DEVICE) && !vu_has_protocol(&e->fe, VU_PROTOCOL_F_RESET_DEVICE))
        return "the backend does not offer RESET_DEVICE";
    if ((c->flags & CASE_INDIRECT) && !e->fe.ring[VU_REQUEST_QUEUE].use_indirect)
        return "the backend does not offer INDIRECT_DESC";
    return NULL;
}

/* A GETATTR of the root answers, after an INIT if the session wants one. */
static int good_request(struct env *e)
{
    struct fuse_attr_out a;
    int err = vu_fuse_getattr(&e->fs, FUSE_ROOT_ID, &a);
    if (err != 0 && err != VU_FUSE_BROKEN) {
        err = vu_fuse_init(&e->fs);
        if (err == 0)
            err = vu_fuse_getattr(&e->fs, FUSE_ROOT_ID, &a);
    }
    if (err == 0 && !S_ISDIR(a.attr.mode))
        return vu_fail(&e->fe, -1, "GETATTR of the root: mode %o", a.attr.mode);
    if (err != 0 && err != VU_FUSE_BROKEN)
        vu_fail(&e->fe, err, "GETATTR of the root: %s", strerror(-err));
    return err == 0 ? 0 : -1;
}

static bool serves(struct env *e)
{
    uint64_t features;
    if (good_request(e) < 0)
        return false;
    if (vu_query(&e->fe, VU_GET_FEATURES, NULL, 0, &features, sizeof(features)) < 0) {
        char why[sizeof(e->fe.error)];
        snprintf(why, sizeof(why), "%s", e->fe.error);
        vu_fail(&e->fe, -EPROTO, "the rings serve but the control channel does not: %s", why);
        return false;
    }
    return true;
}

static enum outcome lost(struct env *e, char *why, size_t len)
{
    if (vu_peer_closed(&e->fe, 20))
        return OUT_CLOSED;
    snprintf(why, len, "%s", e->fe.error);
    return OUT_UNRESPONSIVE;
}

static enum outcome health(struct env *e, const struct hcase *c, char *why, size_t len)
{
    if (vu_peer_closed(&e->fe, 20))
        return OUT_CLOSED;
    if (e->reached < STAGE_OWNED && vu_handshake(&e->fe) < 0)
        return lost(e, why, len);
    /* A case that ran before the rings existed: start them now.  If the
     * case left a ring running, the backend may refuse that; the restart
     * below stops the rings first, as QEMU does. */
    bool started = e->reached >= STAGE_STARTED || vu_start(&e->fe) == 0;
    /* Where the rings may rightly be stopped, try them only briefly. */
    int timeout = e->fe.opt.timeout_ms;
    if (c->expect != EXPECT_KEEP_SERVING)
        e->fe.opt.timeout_ms = e->quick_ms;
    bool served = started && serves(e);
    e->fe.opt.timeout_ms = timeout;
    if (served)
        return OUT_SERVED;
    if (vu_peer_closed(&e->fe, 20))
        return OUT_CLOSED;
    vu_fuse_reset(&e->fs);
    if (vu_restart(&e->fe) == 0 && serves(e))
        return OUT_RESTARTED;
    return lost(e, why, len);
}

/* The first scratch byte the backend changed where no writable
 * descriptor allowed it; -1 when none. */
static long stray_write(struct env *e)
{
    const uint8_t *now = vu_mem_ptr(&e->fe.mem, e->scratch_gpa, SCRATCH_SIZE);
    for (long i = 0; i < (long)SCRATCH_SIZE; i++)
        if (!e->writable_map[i] && now[i] != e->scratch_copy[i])
            return i;
    return -1;
}

static const char *describe(enum outcome o)
{
    switch (o) {
    case OUT_SERVED: return "served on";
    case OUT_RESTARTED: return "served after a ring restart";
    case OUT_CLOSED: return "closed the connection";
    case OUT_UNRESPONSIVE: return "no answer";
    case OUT_NOT_CHECKED: return "session ended by the case";
    }
    return "?";
}

/* What --strict asks beyond survival; NULL when satisfied. */
static const char *strict_miss(const struct env *e, const struct hcase *c, enum outcome o,
                               const struct vu_backend *b)
{
    bool closed = o == OUT_CLOSED;
    if (c->expect == EXPECT_KEEP_SERVING && o != OUT_SERVED)
        return "expected to keep serving on the same rings";
    if (c->expect == EXPECT_SERVE_AFTER_RESET && closed)
        return "expected to serve again after a ring restart, closed instead";
    if ((c->flags & CASE_RETURNS) && e->raw_sent && !e->raw_returned && !closed)
        return "the malformed chain never came back on the used ring";
    if (e->unanswered && !closed)
        return "a need_reply message got no answer";
    if ((o == OUT_SERVED || o == OUT_RESTARTED) && b->reaped &&
        !(WIFEXITED(b->status) && WEXITSTATUS(b->status) == 0))
        return "exit status not 0 after a normal disconnect";
    return NULL;
}

struct verdict {
    const char *status;   /* "ok", "FAIL", "skip" */
    char detail[2048];
};

static void judge(struct env *e, const struct hcase *c, const struct config *cfg, int rc,
                  enum outcome o, const char *why, struct vu_backend *b, bool exited,
                  struct verdict *v)
{
    char msg[512], how[128];
    long stray = e->raw_sent ? stray_write(e) : -1;
    const char *miss = cfg->strict ? strict_miss(e, c, o, b) : NULL;
    v->status = "FAIL";
    if (rc == CASE_FAILED)
        snprintf(msg, sizeof(msg), "%s", e->note);
    else if (vu_backend_crashed(b, msg, sizeof(msg)))
        ;
    else if (!exited)
        snprintf(msg, sizeof(msg), "still running %d s after the frontend closed the connection",
                 EXIT_WAIT_MS / 1000);
    else if (!vu_mem_guards_intact(&e->fe.mem, msg, sizeof(msg)))
        ;
    else if (stray >= 0)
        snprintf(msg, sizeof(msg), "wrote guest memory no writable descriptor covers (scratch + %ld)",
                 stray);
    else if (o == OUT_UNRESPONSIVE)
        snprintf(msg, sizeof(msg), "connection open but no answer: %s", why);
    else if (miss)
        snprintf(msg, sizeof(msg), "%s", miss);
    else
        v->status = "ok";
    if (strcmp(v->status, "ok") == 0)
        snprintf(v->detail, sizeof(v->detail), "%s (%s); %s", describe(o),
                 vu_backend_describe(b, how, sizeof(how)), e->note);
    else
        snprintf(v->detail, sizeof(v->detail), "%s [%s, %s; %s]", msg, describe(o),
                 vu_backend_describe(b, how, sizeof(how)), e->note);
}

static int setup_env(struct env *e, const struct config *cfg, const struct hcase *c,
                     const char *socket_path)
{
    struct vu_options o;
    vu_options_default(&o);
    o.timeout_ms = cfg->timeout_ms;
    if (c->flags & CASE_NO_INDIRECT)
        o.indirect = false;
    e->strict = cfg->strict;
    e->timeout_ms = cfg->timeout_ms;
    e->quick_ms = cfg->timeout_ms < 1000 ? cfg->timeout_ms : 1000;
    e->seed = cfg->seed;
    e->rng = cfg->seed * 0x9e3779b97f4a7c15ull | 1;
    e->scratch_copy = malloc(SCRATCH_SIZE);
    e->writable_map = calloc(1, SCRATCH_SIZE);
    if (!e->scratch_copy || !e->writable_map)
        return vu_fail(&e->fe, -ENOMEM, "out of memory");
    if (vu_connect(&e->fe, socket_path, &o) < 0)
        return -1;
    e->scratch_gpa = vu_mem_alloc(&e->fe.mem, 1, SCRATCH_SIZE, 4096, NULL);
    if (!e->scratch_gpa || vu_fuse_create(&e->fs, &e->fe, 8, 96 * 1024, 96 * 1024) < 0)
        return vu_fail(&e->fe, -ENOMEM, "guest memory too small");
    return bring_up(e, c->stage);
}

static void free_env(struct env *e)
{
    vu_fuse_destroy(&e->fs);
    vu_close(&e->fe);
    free(e->scratch_copy);
    free(e->writable_map);
}

static void run_case(const struct config *cfg, const struct hcase *c, struct verdict *v)
{
    static struct env e;
    memset(&e, 0, sizeof(e));
    e.fe.sock = -1;
    e.fe.mem.fd = -1;
    char sock[PATH_MAX], log[PATH_MAX];
    snprintf(sock, sizeof(sock), "%s/s.sock", cfg->workdir);
    snprintf(log, sizeof(log), "%s/%s.log", cfg->workdir, c->name);
    struct vu_backend b;
    if (vu_backend_start(&b, cfg->argv, sock, log) < 0) {
        v->status = "FAIL";
        snprintf(v->detail, sizeof(v->detail), "cannot start the backend: %s", strerror(errno));
        return;
    }
    int rc = CASE_DONE;
    enum outcome o = OUT_NOT_CHECKED;
    char why[512] = "";
    const char *unmet = NULL;
    if (setup_env(&e, cfg, c, sock) < 0)
        rc = case_fail(&e, "setting up (%s): %s", c->stage == STAGE_RUNNING ? "through INIT" : "partly",
                       e.fe.error);
    else if ((unmet = unmet_requirement(&e, c)))
        rc = case_skip(&e, "%s", unmet);
    else
        rc = c->run(&e, c);
    if (rc == CASE_DONE && !(c->flags & CASE_ENDS_SESSION))
        o = health(&e, c, why, sizeof(why));
    if (e.fe.sock >= 0)
        close(e.fe.sock);
    e.fe.sock = -1;
    bool exited = vu_backend_wait(&b, EXIT_WAIT_MS);
    if (!exited)
        vu_backend_kill(&b);
    if (rc == CASE_SKIP) {
        v->status = "skip";
        snprintf(v->detail, sizeof(v->detail), "%s", e.note);
    } else {
        judge(&e, c, cfg, rc, o, why, &b, exited, v);
    }
    free_env(&e);
    unlink(sock);
    if (strcmp(v->status, "FAIL") != 0)
        unlink(log);
}

/* ---- the program ------------------------------------------------------------------ */

static bool selected(const struct config *cfg, const char *name)
{
    if (cfg->npatterns == 0)
        return true;
    for (unsigned i = 0; i < cfg->npatterns; i++)
        if (fnmatch(cfg->patterns[i], name, 0) == 0)
            return true;
    return false;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: vhost-hostile [--strict] [--timeout MS] [--workdir DIR] [--case PATTERN]...\n"
               "                     [--seed N] [--list] -- BACKEND [ARGS...]\n"
               "(\"@SOCKET@\" in ARGS is replaced by the socket path)\n");
}

static int parse(int argc, char **argv, struct config *cfg, bool *list)
{
    enum { O_STRICT = 1, O_TIMEOUT, O_WORKDIR, O_CASE, O_LIST, O_SEED, O_HELP };
    static const struct option longopts[] = {
        { "strict", no_argument, NULL, O_STRICT },
        { "timeout", required_argument, NULL, O_TIMEOUT },
        { "workdir", required_argument, NULL, O_WORKDIR },
        { "case", required_argument, NULL, O_CASE },
        { "list", no_argument, NULL, O_LIST },
        { "seed", required_argument, NULL, O_SEED },
        { "help", no_argument, NULL, O_HELP },
        { 0 },
    };
    cfg->timeout_ms = 1000;
    cfg->seed = 1;
    for (int opt; (opt = getopt_long(argc, argv, "", longopts, NULL)) != -1;) {
        switch (opt) {
        case O_STRICT: cfg->strict = true; break;
        case O_TIMEOUT: cfg->timeout_ms = atoi(optarg); break;
        case O_WORKDIR: snprintf(cfg->workdir, sizeof(cfg->workdir), "%s", optarg); break;
        case O_CASE:
            if (cfg->npatterns < MAX_PATTERNS)
                cfg->patterns[cfg->npatterns++] = optarg;
            break;
        case O_LIST: *list = true; break;
        case O_SEED: cfg->seed = strtoull(optarg, NULL, 0); break;
        case O_HELP: usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
    }
    cfg->argv = argv + optind;
    if (!*list && optind >= argc) {
        usage(stderr);
        return -1;
    }
    return 0;
}

static int make_workdir(struct config *cfg)
{
    if (cfg->workdir[0])
        return mkdir(cfg->workdir, 0755) == 0 || errno == EEXIST ? 0 : -1;
    snprintf(cfg->workdir, sizeof(cfg->workdir), "/tmp/vhost-hostile-XXXXXX");
    cfg->made_workdir = true;
    return mkdtemp(cfg->workdir) ? 0 : -1;
}

int main(int argc, char **argv)
{
    static struct config cfg;
    bool list = false;
    if (parse(argc, argv, &cfg, &list) < 0)
        return 2;
    const struct hcase *tables[2];
    size_t sizes[2] = { hostile_ring_cases(&tables[0]), hostile_message_cases(&tables[1]) };
    if (!list && make_workdir(&cfg) < 0) {
        fprintf(stderr, "vhost-hostile: work directory %s: %s\n", cfg.workdir, strerror(errno));
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    unsigned ok = 0, failed = 0, skipped = 0;
    for (size_t t = 0; t < 2; t++) {
        for (size_t i = 0; i < sizes[t]; i++) {
            const struct hcase *c = &tables[t][i];
            if (!selected(&cfg, c->name))
                continue;
            if (list) {
                printf("%-40s %s\n", c->name, c->what);
                continue;
            }
            struct verdict v;
            run_case(&cfg, c, &v);
            printf("%-4s %-40s %s\n", v.status, c->name, v.detail);
            ok += v.status[0] == 'o';
            failed += v.status[0] == 'F';
            skipped += v.status[0] == 's';
        }
    }
    if (list)
        return 0;
    printf("vhost-hostile: %u cases: %u ok, %u skipped, %u failed%s\n", ok + failed + skipped, ok,
           skipped, failed, cfg.strict ? " (strict)" : "");
    if (failed)
        printf("vhost-hostile: backend logs of the failed cases are in %s\n", cfg.workdir);
    else if (cfg.made_workdir)
        rmdir(cfg.workdir);
    if (ok + failed + skipped == 0) {
        fprintf(stderr, "vhost-hostile: no case matches\n");
        return 2;
    }
    return failed ? 1 : 0;
}
