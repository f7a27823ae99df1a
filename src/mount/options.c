/*
 * options.c - see options.h.  Errors are one line on stderr; the caller
 * turns them into exit status 1 (mount(8) only distinguishes zero from
 * non-zero for helpers, so usage errors do not get a status of their own).
 */
#include "mount/options.h"

#include <getopt.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fuse3/fuse_opt.h>

#include "common/log.h"
#include "mount/relay.h"

enum { OPT_PROTOCOL = 256, OPT_VERSION };

static const struct option long_options[] = {
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, OPT_VERSION },
    { "protocol", required_argument, NULL, OPT_PROTOCOL },
    { NULL, 0, NULL, 0 },
};

static void print_help(void)
{
    printf("usage: fsbridge-mount [-f] [-d] [-o OPTIONS] [--protocol=native|matchlock] "
           "[ADDRESS] MOUNTPOINT\n"
           "       mount.fsbridge ADDRESS MOUNTPOINT [-sfnv] [-o OPTIONS]\n"
           "\n"
           "Mounts a directory exported by fsbridged on the host.\n"
           "\n"
           "ADDRESS  vsock:CID:PORT, vsock:PORT (CID 2, the host), unix:PATH,\n"
           "         serial:DEVICE or fd:N (default " MOUNT_DEFAULT_ADDRESS ")\n"
           "\n"
           "  -f                 stay in the foreground (mount.fsbridge: fake, mount nothing)\n"
           "  -d                 debug logging; implies -f\n"
           "  -o OPTIONS         comma-separated mount options:\n"
           "       export=NAME              export to mount (default: the host's default)\n"
           "       queues=N                 relay queues and host connections, 1-%d\n"
           "                                (default: one per CPU)\n"
           "       uring=auto|on|off        FUSE-over-io_uring queues (default auto: when the\n"
           "                                kernel offers them)\n"
           "       poll_us=N                spin up to N us for a reply before sleeping,\n"
           "                                0-%d (default %d; 0: sleep at once)\n"
           "       flush=auto|host          auto (default): the relay answers the close of a\n"
           "                                read-only file by a process that never locked\n"
           "                                (of any file where the host's close is quiet);\n"
           "                                host: every close goes to the host\n"
           "       dir_attrs=auto|host      auto (default): the relay answers a directory's\n"
           "                                GETATTR after a change of its entries with what\n"
           "                                the host sent with the change; host: all to the host\n"
           "       caps=auto|host           auto (default): the relay answers the kernel's\n"
           "                                question whether a file it just created has file\n"
           "                                capabilities (none); host: all to the host\n"
           "       lookups=auto|host        auto (default): the relay answers the lookup of a\n"
           "                                name not yet created in a directory the mount just\n"
           "                                made (where the host says it would push any other\n"
           "                                change there); host: all to the host\n"
           "       open=auto|host|none      auto (default): the relay answers a plain read-only\n"
           "                                open itself, the host opens the file at its first\n"
           "                                read (needs default_permissions and a host that\n"
           "                                allows it); host: every open goes to the host;\n"
           "                                none: opens and closes cost no round trip, the\n"
           "                                host opens the file for each read or write\n"
           "                                (cache=coherent; fcntl and flock locks then stay\n"
           "                                in the guest: see fsbridge-mount(8))\n"
           "       host_events=on|off       echo host changes through the mount so that guest\n"
           "                                inotify watchers see them (default on; acts on\n"
           "                                cache=coherent exports, the ones that push changes;\n"
           "                                not set up on others of a version-4 host)\n"
           "       threads=N                matchlock: /dev/fuse threads, 1-%d (default %d);\n"
           "                                native: the old name of queues=\n"
           "       connections=N            matchlock: most host connections, 1-%d (default %d)\n"
           "       prefix=PATH              matchlock: guest path of the mount (default MOUNTPOINT)\n"
           "       protocol=NAME            as --protocol (for mount(8) and fstab)\n"
           "       no_default_permissions   leave permission checks to the host alone\n"
           "       remount                  change the VFS flags (ro, rw, nosuid, ...) of the\n"
           "                                fsbridge mount at MOUNTPOINT\n"
           "       ro, allow_other, nosuid, nodev, noexec, ...  as for any FUSE mount\n"
           "  --protocol=NAME    the host's protocol: native (fsbridged's, the default) or\n"
           "                     matchlock (matchlock's CBOR paths: fsbridged or a matchlock host)\n"
           "  -h, --help         this text\n"
           "      --version      print the version\n",
           RELAY_MAX_QUEUES, RELAY_MAX_POLL_US, RELAY_DEFAULT_POLL_US, RELAY_MAX_QUEUES,
           MOUNT_DEFAULT_THREADS, MOUNT_MAX_CONNECTIONS,
           MOUNT_DEFAULT_CONNECTIONS);
}

static bool parse_count(const char *text, long max, unsigned *out)
{
    char *end;
    long n = strtol(text, &end, 10);
    if (end == text || *end || n < 1 || n > max)
        return false;
    *out = (unsigned)n;
    return true;
}

static bool parse_number(const char *text, long max, unsigned *out)
{
    char *end;
    long n = strtol(text, &end, 10);
    if (end == text || *end || n < 0 || n > max)
        return false;
    *out = (unsigned)n;
    return true;
}

/* The relay's choice options, NAME=WORD, each setting one field of struct
 * mount_options: one table and one parser rather than a parser per option,
 * so that they all match, set relay_set and report alike, and a new one is
 * a row.  flush=, dir_attrs=, caps= and lookups= name the relay's shortcuts: auto (the
 * default) lets the relay answer what it can, host sends all to the host. */
enum { CHOICE_WORDS = 3 };
struct choice_word {
    const char *word;
    int value; /* of the field's enum, or a bool */
};
struct choice_option {
    const char *name;
    size_t offset, size; /* of the field: FIELD() */
    struct choice_word words[CHOICE_WORDS]; /* fewer: ended by { NULL } */
    const char *expected; /* the words, for the error message */
};
#define FIELD(m) offsetof(struct mount_options, m), sizeof(((struct mount_options *)0)->m)
#define AUTO_HOST { { "auto", false }, { "host", true } }

static const struct choice_option choice_options[] = {
    { "uring", FIELD(uring),
      { { "auto", RELAY_URING_AUTO }, { "on", RELAY_URING_ON }, { "off", RELAY_URING_OFF } },
      "auto, on or off" },
    { "open", FIELD(open_mode),
      { { "auto", RELAY_OPEN_AUTO }, { "host", RELAY_OPEN_HOST }, { "none", RELAY_OPEN_NONE } },
      "auto, host or none" },
    { "flush", FIELD(flush_by_host), AUTO_HOST, "auto or host" },
    { "dir_attrs", FIELD(dir_attrs_by_host), AUTO_HOST, "auto or host" },
    { "caps", FIELD(caps_by_host), AUTO_HOST, "auto or host" },
    { "lookups", FIELD(lookups_by_host), AUTO_HOST, "auto or host" },
    { "host_events", FIELD(host_events), { { "on", true }, { "off", false } },
      "host_events=on or off" },
};

/* The fields are bools or enums, and set_choice() stores an enum as an int. */
_Static_assert(sizeof(enum relay_uring) == sizeof(int) && sizeof(enum relay_open) == sizeof(int),
               "a choice option's enum is not int-sized");

static void set_choice(struct mount_options *o, const struct choice_option *c, int value)
{
    char *field = (char *)o + c->offset;
    if (c->size == sizeof(bool))
        *(bool *)field = value;
    else
        *(int *)field = value;
}

/* The choice option OPT (NAME=...) names, or NULL. */
static const struct choice_option *find_choice(const char *opt)
{
    for (size_t i = 0; i < sizeof(choice_options) / sizeof(choice_options[0]); i++) {
        size_t n = strlen(choice_options[i].name);
        if (strncmp(opt, choice_options[i].name, n) == 0 && opt[n] == '=')
            return &choice_options[i];
    }
    return NULL;
}

/* OPT is C's NAME=WORD: sets C's field to WORD's value, or false (logged). */
static bool parse_choice(const char *opt, const struct choice_option *c, struct mount_options *o)
{
    const char *word = opt + strlen(c->name) + 1;
    for (size_t i = 0; i < CHOICE_WORDS && c->words[i].word; i++) {
        if (strcmp(word, c->words[i].word) == 0) {
            set_choice(o, c, c->words[i].value);
            return true;
        }
    }
    log_error("bad option '%s' (expected %s)", opt, c->expected);
    return false;
}

/* The relay's own options (native protocol).  False (logged) for a bad
 * value; *known false for an option that is not one of them. */
static bool parse_relay_option(const char *opt, struct mount_options *o, bool *known)
{
    *known = true;
    if (strncmp(opt, "queues=", 7) == 0) {
        if (parse_count(opt + 7, RELAY_MAX_QUEUES, &o->queues))
            return true;
        log_error("bad option '%s' (queues must be 1-%d)", opt, RELAY_MAX_QUEUES);
        return false;
    }
    if (strncmp(opt, "poll_us=", 8) == 0) {
        o->relay_set = true;
        if (parse_number(opt + 8, RELAY_MAX_POLL_US, &o->poll_us))
            return true;
        log_error("bad option '%s' (poll_us must be 0-%d)", opt, RELAY_MAX_POLL_US);
        return false;
    }
    const struct choice_option *c = find_choice(opt);
    if (c) {
        o->relay_set = true;
        return parse_choice(opt, c, o);
    }
    *known = false;
    return true;
}

static bool parse_export(const char *name, struct mount_options *o)
{
    struct fsb_hello h = { .name_len = (uint16_t)strlen(name) };
    if (strlen(name) > FSB_EXPORT_NAME_MAX)
        return false;
    memcpy(h.name, name, h.name_len);
    if (fsb_hello_check_name(&h) < 0)
        return false;
    memcpy(o->export_name, h.name, h.name_len + 1);
    return true;
}

/* matchlock's guest paths are clean absolute paths: "/" or "/a/b". */
static bool parse_prefix(const char *path, struct mount_options *o)
{
    size_t len = strlen(path);
    if (path[0] != '/' || len >= sizeof(o->prefix))
        return false;
    if (len > 1 && (path[len - 1] == '/' || strstr(path, "//") || strstr(path, "/./") ||
                    strstr(path, "/../") || strcmp(path + len - 2, "/.") == 0 ||
                    (len >= 3 && strcmp(path + len - 3, "/..") == 0)))
        return false;
    memcpy(o->prefix, path, len + 1);
    return true;
}

/* Options of one protocol given with the other.  Returns false (logged). */
static bool check_protocol_options(struct mount_options *o)
{
    if (o->protocol == MOUNT_PROTOCOL_MATCHLOCK) {
        if (*o->export_name) {
            log_error("export= does not apply to --protocol=matchlock (the host picks the "
                      "export by path: see prefix=)");
            return false;
        }
        if (!o->connections)
            o->connections = MOUNT_DEFAULT_CONNECTIONS;
        if (o->queues || o->relay_set) {
            log_error("queues=, poll_us= and the relay's choices (uring=, open=, flush=, "
                      "dir_attrs=, caps=, lookups=, host_events=) do not apply to "
                      "--protocol=matchlock");
            return false;
        }
    } else if (o->connections || *o->prefix) {
        log_error("connections= and prefix= need --protocol=matchlock");
        return false;
    } else if (o->threads_set && !o->queues) {
        o->queues = o->threads; /* threads= is queues='s old name */
    }
    return true;
}

/* fstab and mount(8) options that mean nothing to the kernel or libfuse
 * (mount.fuse drops the same ones). */
static bool is_mount8_only(const char *opt)
{
    static const char *const names[] = { "defaults", "auto", "noauto", "user", "nouser",
                                         "users", "owner", "group", "_netdev", "nofail" };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(opt, names[i]) == 0)
            return true;
    return strncmp(opt, "x-", 2) == 0 || strncmp(opt, "comment=", 8) == 0;
}

static bool parse_protocol(const char *name, struct mount_options *o);

static bool parse_one_option(const char *opt, struct mount_options *o)
{
    bool relay_option;
    bool ok = parse_relay_option(opt, o, &relay_option);
    if (relay_option)
        return ok;
    if (strncmp(opt, "export=", 7) == 0) {
        if (!parse_export(opt + 7, o)) {
            log_error("bad export name '%s' (printable ASCII without '/' or ',', at most %d "
                      "bytes)", opt + 7, FSB_EXPORT_NAME_MAX);
            return false;
        }
    } else if (strncmp(opt, "threads=", 8) == 0) {
        if (!parse_count(opt + 8, RELAY_MAX_QUEUES, &o->threads)) {
            log_error("bad option '%s' (threads must be 1-%d)", opt, RELAY_MAX_QUEUES);
            return false;
        }
        o->threads_set = true;
    } else if (strncmp(opt, "protocol=", 9) == 0) {
        return parse_protocol(opt + 9, o); /* for mount(8) and fstab */
    } else if (strncmp(opt, "connections=", 12) == 0) {
        if (!parse_count(opt + 12, MOUNT_MAX_CONNECTIONS, &o->connections)) {
            log_error("bad option '%s' (connections must be 1-%d)", opt, MOUNT_MAX_CONNECTIONS);
            return false;
        }
    } else if (strncmp(opt, "prefix=", 7) == 0) {
        if (!parse_prefix(opt + 7, o)) {
            log_error("bad option '%s' (an absolute path without '.', '..' or empty "
                      "components)", opt);
            return false;
        }
    } else if (strcmp(opt, "remount") == 0) {
        o->remount = true; /* the other options name the flags: remount.h */
    } else if (strcmp(opt, "default_permissions") == 0) {
        o->default_permissions = true;
    } else if (strcmp(opt, "no_default_permissions") == 0) {
        o->default_permissions = false;
    } else if (!is_mount8_only(opt) && fuse_opt_add_opt(&o->fuse_opts, opt) < 0) {
        log_error("out of memory");
        return false;
    }
    return true;
}

static bool parse_option_list(const char *list, struct mount_options *o)
{
    char *copy = strdup(list), *save = NULL;
    bool ok = copy != NULL;
    for (char *opt = copy ? strtok_r(copy, ",", &save) : NULL; ok && opt;
         opt = strtok_r(NULL, ",", &save))
        ok = parse_one_option(opt, o);
    free(copy);
    return ok;
}

static bool parse_protocol(const char *name, struct mount_options *o)
{
    if (strcmp(name, "native") == 0)
        o->protocol = MOUNT_PROTOCOL_NATIVE;
    else if (strcmp(name, "matchlock") == 0)
        o->protocol = MOUNT_PROTOCOL_MATCHLOCK;
    else {
        log_error("unknown protocol '%s' (expected native or matchlock)", name);
        return false;
    }
    return true;
}

static void log_bad_option(int c, int optopt_value, const char *arg)
{
    if (c == ':')
        log_error("option '%s' needs an argument (see --help)", arg);
    else if (optopt_value)
        log_error("unknown option '-%c' (see --help)", optopt_value);
    else
        log_error("unknown option '%s' (see --help)", arg);
}

/* One option character C (with optarg) of either calling convention. */
static enum mount_parse_result apply_option(int c, bool helper, struct mount_options *o,
                                            char **argv)
{
    switch (c) {
    case 'f':
        /* mount(8) passes -f for "fake": do everything but mount. */
        if (helper)
            o->fake = true;
        else
            o->foreground = true;
        return MOUNT_PARSE_RUN;
    case 'd':
        o->debug = o->foreground = true;
        return MOUNT_PARSE_RUN;
    case 'o':
        return parse_option_list(optarg, o) ? MOUNT_PARSE_RUN : MOUNT_PARSE_ERROR;
    case 's': /* sloppy, no mtab, verbose, type: nothing to do for us */
    case 'n':
    case 'v':
    case 't':
        return MOUNT_PARSE_RUN;
    case OPT_PROTOCOL:
        return parse_protocol(optarg, o) ? MOUNT_PARSE_RUN : MOUNT_PARSE_ERROR;
    case 'h':
        print_help();
        return MOUNT_PARSE_EXIT;
    case OPT_VERSION:
        printf("fsbridge-mount %s\n", FSB_VERSION);
        return MOUNT_PARSE_EXIT;
    default:
        log_bad_option(c, optopt, argv[optind - 1]);
        return MOUNT_PARSE_ERROR;
    }
}

/* A lone positional that names a transport is an address without its
 * mountpoint, not a directory called "unix:..." (write ./unix:x for that). */
static bool looks_like_address(const char *arg)
{
    static const char *const prefixes[] = { "unix:", "vsock:", "serial:", "fd:" };
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
        if (strncmp(arg, prefixes[i], strlen(prefixes[i])) == 0)
            return true;
    return false;
}

/* ADDRESS and MOUNTPOINT: mount(8) always passes both; by hand, ADDRESS
 * may be left out. */
static bool parse_positionals(int count, char **args, bool helper, struct mount_options *o)
{
    const char *address = MOUNT_DEFAULT_ADDRESS;
    if (count == 0 || (helper && count == 1)) {
        log_error("missing %s (see --help)", count == 0 && !helper ? "MOUNTPOINT"
                                                                   : "ADDRESS or MOUNTPOINT");
        return false;
    }
    if (count == 1 && looks_like_address(args[0])) {
        log_error("missing MOUNTPOINT after '%s' (see --help)", args[0]);
        return false;
    }
    if (count > 2) {
        log_error("unexpected argument '%s' (see --help)", args[2]);
        return false;
    }
    if (count == 2)
        address = args[0];
    o->mountpoint = args[count - 1];

    char err[256];
    if (fsb_address_parse(address, true, &o->addr, err, sizeof(err)) < 0) {
        log_error("%s", err);
        return false;
    }
    return true;
}

/* mount.fsbridge for `mount -t fsbridge`; mount.fuse.fsbridge for what
 * mount(8) runs on a mounted fsbridge directory (its type is fuse.fsbridge),
 * e.g. for `mount -o remount,ro`. */
static bool invoked_as_helper(const char *argv0)
{
    const char *base = strrchr(argv0, '/');
    base = base ? base + 1 : argv0;
    return strcmp(base, "mount.fsbridge") == 0 || strcmp(base, "mount.fuse.fsbridge") == 0;
}

enum mount_parse_result mount_options_parse(int argc, char **argv, struct mount_options *o)
{
    bool helper = argc > 0 && invoked_as_helper(argv[0]);
    /* Leading ':' to report a missing argument as ':'; GNU getopt permutes,
     * so options may follow the positionals as mount(8) passes them. */
    const char *shortopts = helper ? ":sfnvo:t:h" : ":fdo:h";
    int c;

    memset(o, 0, sizeof(*o));
    o->threads = MOUNT_DEFAULT_THREADS;
    o->poll_us = RELAY_DEFAULT_POLL_US;
    o->host_events = true;
    o->default_permissions = true;
    o->foreground = false;
    opterr = 0;
    while ((c = getopt_long(argc, argv, shortopts, long_options, NULL)) != -1) {
        enum mount_parse_result r = apply_option(c, helper, o, argv);
        if (r != MOUNT_PARSE_RUN)
            return r;
    }
    if (!parse_positionals(argc - optind, argv + optind, helper, o) ||
        !check_protocol_options(o))
        return MOUNT_PARSE_ERROR;
    return MOUNT_PARSE_RUN;
}
