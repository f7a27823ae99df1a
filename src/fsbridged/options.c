/*
 * options.c - parsing fsbridged's command line into struct options.
 */
#include "fsbridged/options.h"
#include "common/log.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "Usage: fsbridged --export NAME=DIR[,OPTION...] --listen ADDRESS [OPTIONS]\n"
    "       fsbridged --socket-path PATH --shared-dir DIR [OPTIONS]   (virtio-fs)\n"
    "Share host directories with virtual machines.\n"
    "\n"
    "Stream sessions (fsbridge-mount, matchlock guests):\n"
    "  --export NAME=DIR[,ro][,cache=MODE][,writeback][,devices]\n"
    "                         export DIR under NAME (repeatable; the first is the\n"
    "                         default export).  MODE: never, metadata, auto\n"
    "                         (default), always.  writeback: guest writeback cache\n"
    "                         (only for exports no one else changes).  devices:\n"
    "                         allow the guest to create device nodes.  A NAME\n"
    "                         starting with '/' is the guest path matchlock\n"
    "                         clients see it at (NAME alone: /NAME).\n"
    "  --listen ADDRESS       unix:PATH, vsock:PORT or fd:N (repeatable)\n"
    "  --threads N            worker threads per session, at most (default 16)\n"
    "  --max-sessions N       concurrent sessions (default 64)\n"
    "  --max-sessions-per-peer N   of one guest: one listener (a VM's hybrid-vsock\n"
    "                         socket), or one CID on vsock (default 32)\n"
    "\n"
    "virtio-fs (vhost-user-fs backend, virtiofsd-compatible; one frontend, exit\n"
    "when it disconnects):\n"
    "  --socket-path PATH     listen for the frontend (QEMU) on this Unix socket\n"
    "  --fd N                 or on this inherited listening socket (libvirt)\n"
    "  --shared-dir DIR       the directory to share\n"
    "  --cache MODE           never (or none), metadata, auto (default), always\n"
    "  --readonly             refuse every change\n"
    "  --writeback            guest writeback cache (cache auto or always)\n"
    "  --xattr, --no-xattr    extended attributes on (default) or off\n"
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
    static const char *const names[] = { "never", "metadata", "auto", "always" };
    for (int i = 0; i < 4; i++) {
        if (strcmp(v, names[i]) == 0) {
            *mode = (enum fsb_cache_mode)i;
            return 0;
        }
    }
    return -1;
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
    if (e->writeback && (e->cache == FSB_CACHE_NEVER || e->cache == FSB_CACHE_METADATA))
        return fail("--export '%s': writeback needs cache=auto or cache=always", arg);
    for (unsigned i = 0; i < o->nexports; i++)
        if (same_export_name(o->exports[i].name, e->name))
            return fail("export name '%s' given twice (NAME and /NAME count as one)", e->name);
    o->nexports++;
    return 0;
}

static int parse_listen(struct options *o, const char *arg)
{
    char err[256];
    if (o->nlisten == MAX_LISTENERS)
        return fail("too many listeners (at most %s)", "16");
    if (fsb_address_parse(arg, false, &o->listen[o->nlisten], err, sizeof(err)) < 0)
        return fail("--listen: %s", err);
    o->nlisten++;
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

int options_parse(int argc, char **argv, struct options *o)
{
    enum { OPT_EXPORT = 256, OPT_LISTEN, OPT_THREADS, OPT_MAX_SESSIONS, OPT_PER_PEER, OPT_LOG_LEVEL,
           OPT_SYSLOG, OPT_HELP, OPT_VERSION };
    static const struct option longopts[] = {
        { "export", required_argument, NULL, OPT_EXPORT },
        { "listen", required_argument, NULL, OPT_LISTEN },
        { "threads", required_argument, NULL, OPT_THREADS },
        { "max-sessions", required_argument, NULL, OPT_MAX_SESSIONS },
        { "max-sessions-per-peer", required_argument, NULL, OPT_PER_PEER },
        { "log-level", required_argument, NULL, OPT_LOG_LEVEL },
        { "syslog", no_argument, NULL, OPT_SYSLOG },
        { "help", no_argument, NULL, OPT_HELP },
        { "version", no_argument, NULL, OPT_VERSION },
        { "socket-path", required_argument, NULL, VOPT_SOCKET_PATH },
        { "fd", required_argument, NULL, VOPT_FD },
        { "shared-dir", required_argument, NULL, VOPT_SHARED_DIR },
        { "cache", required_argument, NULL, VOPT_CACHE },
        { "readonly", no_argument, NULL, VOPT_READONLY },
        { "xattr", no_argument, NULL, VOPT_XATTR },
        { "no-xattr", no_argument, NULL, VOPT_NO_XATTR },
        { "writeback", no_argument, NULL, VOPT_WRITEBACK },
        { "sandbox", required_argument, NULL, VOPT_SANDBOX },
        { "seccomp", required_argument, NULL, VOPT_SECCOMP },
        { "thread-pool-size", required_argument, NULL, VOPT_THREAD_POOL_SIZE },
        { "print-capabilities", no_argument, NULL, VOPT_PRINT_CAPABILITIES },
        { NULL, 0, NULL, 0 },
    };
    memset(o, 0, sizeof(*o));
    o->max_workers = 16;
    o->max_sessions = 64;
    o->max_sessions_per_peer = 32;
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
        case OPT_PER_PEER:
            r = parse_count(optarg, "bad --max-sessions-per-peer '%s'", 65536,
                            &o->max_sessions_per_peer);
            break;
        case OPT_LOG_LEVEL: r = vhost_option(&o->vhost, VOPT_LOG_LEVEL, optarg); break;
        case OPT_SYSLOG: o->syslog = true; break;
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
    if (o->nexports == 0 && o->nlisten == 0 && o->vhost.wanted)
        return 0; /* virtio-fs only */
    if (o->nexports == 0)
        return fail("%s", "nothing to serve: give at least one --export (or --socket-path)");
    if (o->nlisten == 0)
        return fail("%s", "nowhere to serve: give at least one --listen");
    return 0;
}
