/*
 * options.c - parsing fsbridged's command line into struct options.
 */
#include "fsbridged/options.h"
#include "common/log.h"
#include "fsbridged/config_file.h"

#include <getopt.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "Usage: fsbridged --export NAME=DIR[,OPTION...] --listen ADDRESS [OPTIONS]\n"
    "       fsbridged --socket-path PATH --shared-dir DIR [OPTIONS]   (virtio-fs)\n"
    "Share host directories with virtual machines.\n"
    "\n"
    "Stream sessions (fsbridge-mount, matchlock guests):\n"
    "  --export NAME=DIR[,ro][,cache=MODE][,writeback][,devices][,cid=N[:N...]]\n"
    "         [,overlay=UPPER[,workdir=W]][,xattr=XMODE]\n"
    "                         export DIR under NAME (repeatable; the first is the\n"
    "                         default export).  MODE: never, metadata, auto\n"
    "                         (default), always, coherent (long caching kept true\n"
    "                         by pushing host changes; stream guests only).\n"
    "                         writeback: guest writeback cache\n"
    "                         (only for exports no one else changes).  devices:\n"
    "                         allow the guest to create device nodes.  A NAME\n"
    "                         starting with '/' is the guest path matchlock\n"
    "                         clients see it at (NAME alone: /NAME).  cid=: only\n"
    "                         these vsock peers may use it (other peers: no CID).\n"
    "                         overlay=UPPER: copy-on-write, DIR is never written;\n"
    "                         changes go to UPPER (overlayfs format), staged in\n"
    "                         workdir=W (default UPPER.work); see fsbridge-overlay(1)\n"
    "                         XMODE: passthrough (default: trusted.* and\n"
    "                         security.* EPERM to change), map (the guest's\n"
    "                         trusted.* and security.* kept as user.fsbridge.*\n"
    "                         on the host) or off (ENOSYS); see fsbridged(8)\n"
    "  --listen ADDRESS[,exports=NAME[:NAME...]][,cid=N[:N...]]\n"
    "                         unix:PATH, vsock:PORT or fd:N (repeatable).\n"
    "                         exports=: serve only these exports there (its\n"
    "                         default: the first of them in --export order);\n"
    "                         cid=: accept only these vsock CIDs\n"
    "  --threads N            worker threads per connection, at most (default 16)\n"
    "  --max-sessions N       concurrent sessions of all guests (default 1600)\n"
    "  --poll-us N            a reader waiting for the guest spins up to N us\n"
    "                         (adaptive) before it sleeps; 0: never (the default,\n"
    "                         see bench/README.md; virtio-fs queues too)\n"
    "  --cpu-hints MODE       ignore (default) or follow: serve a connection whose\n"
    "                         client on this machine names its queue's CPU on that\n"
    "                         CPU (if it is one of fsbridged's; see bench/README.md)\n"
    "\n"
    "Budgets of one guest (a vsock CID; a Unix socket listener's peer uid; the\n"
    "virtio-fs frontend), over all its sessions:\n"
    "  --guest-max-sessions N connections (default 16; alias --max-sessions-per-peer)\n"
    "  --guest-max-open N     open files and directories (default: the fd pool\n"
    "                         left by RLIMIT_NOFILE shared by 100 guests, >= 64)\n"
    "  --guest-max-inodes N   looked-up inodes (default 250000)\n"
    "  --guest-max-queued SIZE  request and reply bytes in flight; beyond, its\n"
    "                         requests are not read (default 8M; K, M, G)\n"
    "  --guest-max-threads N  worker and lock-wait threads (default 80)\n"
    "\n"
    "virtio-fs (vhost-user-fs backend, virtiofsd-compatible; one frontend, exit\n"
    "when it disconnects):\n"
    "  --socket-path PATH     listen for the frontend (QEMU) on this Unix socket\n"
    "  --fd N                 or on this inherited listening socket (libvirt)\n"
    "  --shared-dir DIR       the directory to share\n"
    "  --cache MODE           never (or none), metadata, auto (default), always\n"
    "  --readonly             refuse every change\n"
    "  --writeback            guest writeback cache (cache auto or always)\n"
    "  --overlay-dir UPPER    copy-on-write: the shared dir is never written\n"
    "  --xattr, --no-xattr    extended attributes on (default) or off\n"
    "  --xattr-map            guest trusted.* and security.* stored as\n"
    "                         user.fsbridge.* (as the export option xattr=map)\n"
    "  --thread-pool-size N   requests that arrive together run on N threads,\n"
    "                         a lone one on its queue's thread (default 4;\n"
    "                         0: all on the queue threads)\n"
    "  --sandbox MODE         namespace (default as root: empty root, no network)\n"
    "                         or none; applies to stream sessions too\n"
    "  --seccomp MODE         errno (default as root: other system calls fail\n"
    "                         with ENOSYS), kill, trap, log or none\n"
    "  --print-capabilities   print the vhost-user capabilities (JSON) and exit\n"
    "  -o source=DIR,cache=MODE,xattr|no_xattr,...   legacy virtiofsd options\n"
    "  -f                     foreground (always)   -d  debug log\n"
    "\n"
    "Common:\n"
    "  --socket-mode OCTAL    mode of the Unix sockets fsbridged creates (--listen\n"
    "                         unix: and --socket-path; default 0600, 0660 with\n"
    "                         --socket-group), set before they listen\n"
    "  --socket-group GROUP   group of those sockets (a name or a gid)\n"
    "  --allow-uid UID[,UID...]  only these uids may connect to a Unix socket\n"
    "                         (checked with SO_PEERCRED; repeatable)\n"
    "  --config FILE          read options from FILE: one long option a line,\n"
    "                         NAME VALUE or NAME (e.g. 'export src=/srv/src,ro'),\n"
    "                         '#' starts a comment line (/etc/fsbridge/*.conf)\n"
    "  --log-level LEVEL      error, warn, info (default) or debug\n"
    "  --syslog               log to syslog instead of stderr\n"
    "  --help                 show this help\n"
    "  --version              show the version\n";

static int fail(const char *fmt, const char *arg)
{
    fprintf(stderr, "fsbridged: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see fsbridged --help)\n");
    return -1;
}

static int parse_cache(const char *v, enum fsb_cache_mode *mode)
{
    static const char *const names[] = { "never", "metadata", "auto", "always", "coherent" };
    for (int i = 0; i < 5; i++) {
        if (strcmp(v, names[i]) == 0) {
            *mode = (enum fsb_cache_mode)i;
            return 0;
        }
    }
    return -1;
}

/* xattr=MODE of --export: passthrough, map (xattr_map.h) or off. */
static int parse_xattr_mode(struct fsb_export *e, const char *v)
{
    bool map = strcmp(v, "map") == 0, off = strcmp(v, "off") == 0;
    if (!map && !off && strcmp(v, "passthrough") != 0)
        return -1;
    e->xattr_map = map;
    e->no_xattr = off;
    return 0;
}

/* One ",key[=value]" option of --export. */
static int parse_export_option(struct fsb_export *e, char *opt)
{
    if (strcmp(opt, "ro") == 0)
        e->readonly = true;
    else if (strcmp(opt, "rw") == 0)
        e->readonly = false;
    else if (strcmp(opt, "writeback") == 0)
        e->writeback = true;
    else if (strcmp(opt, "devices") == 0)
        e->allow_devices = true;
    else if (strncmp(opt, "cache=", 6) == 0 && parse_cache(opt + 6, &e->cache) == 0)
        ;
    else if (strncmp(opt, "xattr=", 6) == 0 && parse_xattr_mode(e, opt + 6) == 0)
        ;
    else if (strncmp(opt, "cid=", 4) == 0 && fsb_id_set_add(&e->vsock_cids, opt + 4, ':') == 0)
        ;
    else if (strncmp(opt, "overlay=", 8) == 0 && opt[8] && strlen(opt + 8) < sizeof(e->overlay))
        strcpy(e->overlay, opt + 8);
    else if (strncmp(opt, "workdir=", 8) == 0 && opt[8] &&
             strlen(opt + 8) < sizeof(e->overlay_work))
        strcpy(e->overlay_work, opt + 8);
    else
        return fail("unknown export option '%s'", opt);
    return 0;
}

static bool char_ok(char c)
{
    return c > ' ' && c < 0x7f && c != ',';
}

/* A guest path prefix for matchlock clients ("/" or "/a/b", see
 * docs/matchlock.md): no empty, "." or ".." component. */
static bool prefix_ok(const char *name)
{
    if (strcmp(name, "/") == 0)
        return true;
    for (const char *p = name; *p;) {
        const char *start = ++p; /* past the '/' */
        while (*p && *p != '/')
            if (!char_ok(*p++))
                return false;
        size_t n = (size_t)(p - start);
        if (n == 0 || (n == 1 && *start == '.') || (n == 2 && !strncmp(start, "..", 2)))
            return false;
    }
    return true;
}

static bool name_ok(const char *name)
{
    if (!*name || strlen(name) > 255)
        return false;
    if (name[0] == '/')
        return prefix_ok(name);
    for (const char *p = name; *p; p++)
        if (!char_ok(*p) || *p == '/')
            return false;
    return true;
}

/* NAME and /NAME are the same guest path to a matchlock client. */
static bool same_export_name(const char *a, const char *b)
{
    return strcmp(a + (a[0] == '/'), b + (b[0] == '/')) == 0;
}

static int parse_export(struct options *o, const char *arg)
{
    if (o->nexports == MAX_EXPORTS)
        return fail("too many exports (at most %s)", "64");
    struct fsb_export *e = &o->exports[o->nexports];
    char *copy = strdup(arg), *save = NULL;
    char *eq = copy ? strchr(copy, '=') : NULL;
    if (!eq)
        return free(copy), fail("--export '%s': expected NAME=DIR", arg);
    *eq = 0;
    if (!name_ok(copy))
        return free(copy), fail("--export '%s': bad name (printable, no ',', no '/' "
                                "unless a guest path like /workspace)", arg);
    *e = (struct fsb_export){ .cache = FSB_CACHE_AUTO, .root_fd = -1 };
    strcpy(e->name, copy);
    /* The directory runs to the first comma (strtok_r would skip an empty
     * one and take the first option for the directory). */
    char *dir = eq + 1, *opts = strchr(dir, ',');
    if (opts)
        *opts++ = 0;
    if (!*dir || strlen(dir) >= sizeof(e->path))
        return free(copy), fail("--export '%s': missing or too long directory", arg);
    strcpy(e->path, dir);
    for (char *opt = opts ? strtok_r(opts, ",", &save) : NULL; opt; opt = strtok_r(NULL, ",", &save))
        if (parse_export_option(e, opt) < 0)
            return free(copy), -1;
    free(copy);
    /* coherent: dirty guest pages and host writes to the same file would
     * race, an invalidation could not tell whose bytes win */
    if (e->writeback && e->cache != FSB_CACHE_AUTO && e->cache != FSB_CACHE_ALWAYS)
        return fail("--export '%s': writeback needs cache=auto or cache=always", arg);
    if (e->overlay_work[0] && !e->overlay[0])
        return fail("--export '%s': workdir= needs overlay=UPPER", arg);
    /* An overlay's node ids name inodes of two layers, and a host change
     * to LOWER must not reach a guest that sees UPPER's copy or a whiteout
     * there: the watcher cannot map that, and a silent cache=auto instead
     * is not what was asked for. */
    if (e->overlay[0] && e->cache == FSB_CACHE_COHERENT)
        return fail("--export '%s': cache=coherent cannot be used with overlay= (host changes "
                    "of overlay exports are not tracked; use cache=auto)", arg);
    for (unsigned i = 0; i < o->nexports; i++)
        if (same_export_name(o->exports[i].name, e->name))
            return fail("export name '%s' given twice (NAME and /NAME count as one)", e->name);
    o->nexports++;
    return 0;
}

/* Appends exports= NAMES to *LIST (':'-joined). */
static int add_listen_exports(char **list, const char *names)
{
    size_t had = *list ? strlen(*list) + 1 : 0;
    char *p = realloc(*list, had + strlen(names) + 1);
    if (!p)
        return -1;
    if (had)
        p[had - 1] = ':';
    strcpy(p + had, names);
    *list = p;
    return 0;
}

/* One ",key=value" option of --listen. */
static int parse_listen_option(struct options *o, unsigned i, const char *opt)
{
    const char *arg = o->listen[i].text;
    if (strncmp(opt, "exports=", 8) == 0 && opt[8])
        return add_listen_exports(&o->listen_exports[i], opt + 8) < 0
                   ? fail("--listen '%s': out of memory", arg) : 0;
    if (strncmp(opt, "cid=", 4) == 0) {
        if (o->listen[i].kind == FSB_ADDR_UNIX)
            return fail("--listen '%s': cid= is for vsock: and fd: listeners", arg);
        if (fsb_id_set_add(&o->listen_rules[i].cids, opt + 4, ':') < 0)
            return fail("--listen '%s': bad cid= (numbers separated by ':', at most 32)", arg);
        return 0;
    }
    return fail("unknown --listen option '%s' (exports=NAME[:NAME...], cid=N[:N...])", opt);
}

/* ADDRESS[,option...]: the address ends at the first ','. */
static int parse_listen(struct options *o, const char *arg)
{
    char err[256];
    if (o->nlisten == MAX_LISTENERS)
        return fail("too many listeners (at most %s)", "16");
    unsigned i = o->nlisten;
    char *copy = strdup(arg), *save = NULL;
    if (!copy)
        return fail("--listen '%s': out of memory", arg);
    char *opts = strchr(copy, ',');
    if (opts)
        *opts++ = 0;
    /* the address keeps COPY as its text: it lives as long as the options */
    if (fsb_address_parse(copy, false, &o->listen[i], err, sizeof(err)) < 0)
        return free(copy), fail("--listen: %s", err);
    o->listen_rules[i] = (struct fsb_listener_rules){ .uids = &o->allow_uids,
                                                      .exports = FSB_ALL_EXPORTS };
    o->nlisten++;
    for (char *opt = opts ? strtok_r(opts, ",", &save) : NULL; opt; opt = strtok_r(NULL, ",", &save))
        if (parse_listen_option(o, i, opt) < 0)
            return -1;
    return 0;
}

static int find_export_index(const struct options *o, const char *name)
{
    for (unsigned i = 0; i < o->nexports; i++)
        if (same_export_name(o->exports[i].name, name))
            return (int)i;
    return -1;
}

/* exports= names the --export options, wherever they are on the line. */
static int bind_listener(struct options *o, unsigned i)
{
    if (!o->listen_exports[i])
        return 0;
    fsb_export_mask m = 0;
    char *save = NULL;
    for (char *name = strtok_r(o->listen_exports[i], ":", &save); name;
         name = strtok_r(NULL, ":", &save)) {
        int e = find_export_index(o, name);
        if (e < 0)
            return fail("--listen ... exports=: no --export named '%s' (names in exports= "
                        "are separated by ':')", name);
        m |= (fsb_export_mask)1 << e;
    }
    if (!m)
        return fail("--listen %s: exports= names no export", o->listen[i].text);
    o->listen_rules[i].exports = m;
    return 0;
}

static int parse_count(const char *arg, const char *what, unsigned max, unsigned *out)
{
    char *end;
    unsigned long v = strtoul(arg, &end, 10);
    if (*arg == '-' || end == arg || *end || v == 0 || v > max)
        return fail(what, arg);
    *out = (unsigned)v;
    return 0;
}

static int parse_socket_mode(struct options *o, const char *arg)
{
    char *end;
    unsigned long v = strtoul(arg, &end, 8);
    if (!*arg || *end || *arg == '-' || *arg == '+' || v > 0777)
        return fail("bad --socket-mode '%s' (octal, 0 to 0777)", arg);
    o->socket_access.mode = (mode_t)v;
    o->socket_mode_given = true;
    return 0;
}

static int parse_socket_group(struct options *o, const char *arg)
{
    char *end;
    unsigned long v = strtoul(arg, &end, 10);
    if (*arg && !*end && *arg != '-' && v < (gid_t)-1) {
        o->socket_access.gid = (gid_t)v;
        return 0;
    }
    struct group *g = getgrnam(arg);
    if (!g)
        return fail("--socket-group '%s': no such group", arg);
    o->socket_access.gid = g->gr_gid;
    return 0;
}

static int parse_allow_uid(struct options *o, const char *arg)
{
    if (fsb_id_set_add(&o->allow_uids, arg, ',') < 0)
        return fail("bad --allow-uid '%s' (numeric uids separated by ',', at most 32)", arg);
    return 0;
}

/* A budget of --guest-max-KIND: a count, or for bytes SIZE[K|M|G]. */
static int parse_budget(const char *arg, enum fsb_budget_kind kind, struct options *o)
{
    static const char *const what[FSB_BUDGET_KINDS] = {
        "bad --guest-max-open '%s'", "bad --guest-max-inodes '%s'",
        "bad --guest-max-queued '%s' (bytes, e.g. 8M)", "bad --guest-max-threads '%s'",
        "bad --guest-max-sessions '%s'",
    };
    char *end;
    unsigned long long v = strtoull(arg, &end, 10);
    const char *suffixes = "KMG", *s = *end ? strchr(suffixes, *end) : NULL;
    int shift = 0;
    if (kind == FSB_BUDGET_QUEUED && s) {
        shift = 10 * (int)(s - suffixes + 1);
        end++;
    }
    if (*arg == '-' || end == arg || *end || v == 0 || v > (1ull << 32))
        return fail(what[kind], arg);
    o->guest_limits.max[kind] = (size_t)(v << shift);
    return 0;
}

/* --cpu-hints follow|ignore */
static int parse_cpu_hints(struct options *o, const char *v)
{
    if (strcmp(v, "follow") != 0 && strcmp(v, "ignore") != 0)
        return fail("bad --cpu-hints '%s' (expected follow or ignore)", v);
    o->follow_cpu_hints = strcmp(v, "follow") == 0;
    return 0;
}

size_t options_default_open(size_t pool)
{
    size_t share = pool / 100;
    return share > 64 ? share : 64;
}

int options_parse(int argc, char **argv, struct options *o)
{
    enum { OPT_EXPORT = 256, OPT_LISTEN, OPT_THREADS, OPT_MAX_SESSIONS, OPT_LOG_LEVEL,
           OPT_SYSLOG, OPT_SOCKET_MODE, OPT_SOCKET_GROUP, OPT_ALLOW_UID, OPT_CPU_HINTS, OPT_HELP,
           OPT_VERSION,
           OPT_GUEST_BUDGET = 384 /* + enum fsb_budget_kind; below VOPT_* */ };
    static const struct option longopts[] = {
        { "export", required_argument, NULL, OPT_EXPORT },
        { "listen", required_argument, NULL, OPT_LISTEN },
        { "threads", required_argument, NULL, OPT_THREADS },
        { "max-sessions", required_argument, NULL, OPT_MAX_SESSIONS },
        { "max-sessions-per-peer", required_argument, NULL, OPT_GUEST_BUDGET + FSB_BUDGET_SESSIONS },
        { "guest-max-sessions", required_argument, NULL, OPT_GUEST_BUDGET + FSB_BUDGET_SESSIONS },
        { "guest-max-open", required_argument, NULL, OPT_GUEST_BUDGET + FSB_BUDGET_OPEN },
        { "guest-max-inodes", required_argument, NULL, OPT_GUEST_BUDGET + FSB_BUDGET_INODES },
        { "guest-max-queued", required_argument, NULL, OPT_GUEST_BUDGET + FSB_BUDGET_QUEUED },
        { "guest-max-threads", required_argument, NULL, OPT_GUEST_BUDGET + FSB_BUDGET_THREADS },
        { "log-level", required_argument, NULL, OPT_LOG_LEVEL },
        { "syslog", no_argument, NULL, OPT_SYSLOG },
        { "socket-mode", required_argument, NULL, OPT_SOCKET_MODE },
        { "socket-group", required_argument, NULL, OPT_SOCKET_GROUP },
        { "allow-uid", required_argument, NULL, OPT_ALLOW_UID },
        { "cpu-hints", required_argument, NULL, OPT_CPU_HINTS },
        { "help", no_argument, NULL, OPT_HELP },
        { "version", no_argument, NULL, OPT_VERSION },
        { "socket-path", required_argument, NULL, VOPT_SOCKET_PATH },
        { "fd", required_argument, NULL, VOPT_FD },
        { "shared-dir", required_argument, NULL, VOPT_SHARED_DIR },
        { "cache", required_argument, NULL, VOPT_CACHE },
        { "readonly", no_argument, NULL, VOPT_READONLY },
        { "xattr", no_argument, NULL, VOPT_XATTR },
        { "no-xattr", no_argument, NULL, VOPT_NO_XATTR },
        { "xattr-map", no_argument, NULL, VOPT_XATTR_MAP },
        { "writeback", no_argument, NULL, VOPT_WRITEBACK },
        { "overlay-dir", required_argument, NULL, VOPT_OVERLAY_DIR },
        { "sandbox", required_argument, NULL, VOPT_SANDBOX },
        { "seccomp", required_argument, NULL, VOPT_SECCOMP },
        { "thread-pool-size", required_argument, NULL, VOPT_THREAD_POOL_SIZE },
        { "poll-us", required_argument, NULL, VOPT_POLL_US },
        { "print-capabilities", no_argument, NULL, VOPT_PRINT_CAPABILITIES },
        { NULL, 0, NULL, 0 },
    };
    if (config_expand_argv(&argc, &argv, longopts) < 0)
        return -1;
    memset(o, 0, sizeof(*o));
    o->max_workers = 16;
    o->max_sessions = 1600; /* 100 guests of 16 */
    o->guest_limits.max[FSB_BUDGET_SESSIONS] = 16;
    o->guest_limits.max[FSB_BUDGET_INODES] = 250000;
    o->guest_limits.max[FSB_BUDGET_QUEUED] = 8u << 20;
    o->guest_limits.max[FSB_BUDGET_THREADS] = 80; /* one session: 16 workers, 64 lock waits */
    o->socket_access = (struct fsb_socket_access){ .mode = FSB_SOCKET_MODE_DEFAULT,
                                                   .gid = (gid_t)-1 };
    vhost_options_init(&o->vhost);
    opterr = 0;
    int c, r = 0;
    while (r == 0 && (c = getopt_long(argc, argv, "o:fd", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_EXPORT: r = parse_export(o, optarg); break;
        case OPT_LISTEN: r = parse_listen(o, optarg); break;
        case OPT_THREADS: r = parse_count(optarg, "bad --threads '%s'", 1024, &o->max_workers); break;
        case OPT_MAX_SESSIONS:
            r = parse_count(optarg, "bad --max-sessions '%s'", 65536, &o->max_sessions);
            break;
        case OPT_GUEST_BUDGET + FSB_BUDGET_OPEN:
        case OPT_GUEST_BUDGET + FSB_BUDGET_INODES:
        case OPT_GUEST_BUDGET + FSB_BUDGET_QUEUED:
        case OPT_GUEST_BUDGET + FSB_BUDGET_THREADS:
        case OPT_GUEST_BUDGET + FSB_BUDGET_SESSIONS:
            r = parse_budget(optarg, (enum fsb_budget_kind)(c - OPT_GUEST_BUDGET), o);
            break;
        case OPT_LOG_LEVEL: r = vhost_option(&o->vhost, VOPT_LOG_LEVEL, optarg); break;
        case OPT_SYSLOG: o->syslog = true; break;
        case OPT_SOCKET_MODE: r = parse_socket_mode(o, optarg); break;
        case OPT_SOCKET_GROUP: r = parse_socket_group(o, optarg); break;
        case OPT_ALLOW_UID: r = parse_allow_uid(o, optarg); break;
        case OPT_CPU_HINTS: r = parse_cpu_hints(o, optarg); break;
        case OPT_HELP: fputs(usage, stdout); return 1;
        case OPT_VERSION: printf("fsbridged %s\n", FSB_VERSION); return 1;
        case '?': return fail("unknown or incomplete option '%s'", argv[optind - 1]);
        default: r = vhost_option(&o->vhost, c, optarg); break;
        }
    }
    if (r)
        return r;
    if (optind < argc)
        return fail("unexpected argument '%s'", argv[optind]);
    if (vhost_options_finish(&o->vhost) < 0)
        return -1;
    if (!o->socket_mode_given && o->socket_access.gid != (gid_t)-1)
        o->socket_access.mode = FSB_SOCKET_MODE_GROUP_DEFAULT;
    if (o->nexports == 0 && o->nlisten == 0 && o->vhost.wanted)
        return 0; /* virtio-fs only */
    if (o->nexports == 0)
        return fail("%s", "nothing to serve: give at least one --export (or --socket-path)");
    if (o->nlisten == 0)
        return fail("%s", "nowhere to serve: give at least one --listen");
    for (unsigned i = 0; i < o->nlisten; i++)
        if (bind_listener(o, i) < 0)
            return -1;
    return 0;
}
