/*
 * vhost_options.c - see vhost_options.h.
 *
 * Both virtiofsd generations are accepted: the separate options of the Rust
 * virtiofsd (what libvirt passes when the capabilities say
 * "separate-options") and the legacy C daemon's `-o key[=value],...`.
 * Options that only tune what we do anyway (file handles, readdirplus,
 * flock and POSIX locks: always on) are accepted and ignored; options that
 * ask for something we do not have are refused with a message, so that no
 * one believes they got it.
 */
#include "fsbridged/vhost_options.h"
#include "common/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what, const char *arg)
{
    fprintf(stderr, "fsbridged: %s '%s' (see fsbridged --help)\n", what, arg);
    return -1;
}

void vhost_options_init(struct vhost_options *v)
{
    memset(v, 0, sizeof(*v));
    v->fd = -1;
    v->thread_pool_size = 4; /* see virtio_fs.h: bursts in parallel */
    v->poll_us = FSB_DEFAULT_POLL_US;
    v->export = (struct fsb_export){ .cache = FSB_CACHE_AUTO, .root_fd = -1 };
    strcpy(v->export.name, "virtio-fs");
}

/* virtiofsd's names (none = never) and ours. */
static int parse_cache(const char *arg, enum fsb_cache_mode *mode)
{
    static const struct { const char *name; enum fsb_cache_mode mode; } modes[] = {
        { "never", FSB_CACHE_NEVER }, { "none", FSB_CACHE_NEVER },
        { "metadata", FSB_CACHE_METADATA }, { "auto", FSB_CACHE_AUTO },
        { "always", FSB_CACHE_ALWAYS },
    };
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        if (strcmp(arg, modes[i].name) == 0) {
            *mode = modes[i].mode;
            return 0;
        }
    }
    return fail("unknown cache mode", arg);
}

/* --sandbox / -o sandbox=: virtiofsd's chroot mode (for containers
 * without namespaces) is not offered: our empty root needs a mount
 * namespace, and a chroot into one export would hide the others. */
static int set_sandbox(struct vhost_options *v, const char *arg)
{
    int mode = sandbox_parse_mode(arg);
    if (mode < 0)
        return fail("unknown sandbox mode (namespace, none)", arg);
    v->sandbox = (enum sandbox_mode)mode;
    return 0;
}

static int set_seccomp(struct vhost_options *v, const char *arg)
{
    int mode = seccomp_parse_mode(arg);
    if (mode < 0)
        return fail("unknown seccomp mode (errno, kill, log, trap, none)", arg);
    v->seccomp = (enum seccomp_mode)mode;
    return 0;
}

static int parse_number(const char *arg, unsigned max, unsigned *out)
{
    char *end;
    unsigned long n = strtoul(arg, &end, 10);
    if (*arg == '-' || end == arg || *end || n > max)
        return fail("bad number", arg);
    *out = (unsigned)n;
    return 0;
}

static int set_shared_dir(struct vhost_options *v, const char *dir)
{
    if (strlen(dir) >= sizeof(v->export.path))
        return fail("directory name too long", dir);
    strcpy(v->export.path, dir);
    v->have_shared_dir = true;
    return 0;
}

static int set_overlay(struct vhost_options *v, const char *dir)
{
    if (!*dir || strlen(dir) >= sizeof(v->export.overlay))
        return fail("bad overlay directory", dir);
    strcpy(v->export.overlay, dir);
    return 0;
}

static int set_socket_path(struct vhost_options *v, const char *path)
{
    if (strlen(path) >= sizeof(v->socket_path))
        return fail("socket path too long (at most 107 bytes)", path);
    strcpy(v->socket_path, path);
    v->wanted = true;
    return 0;
}

static int set_log_level(const char *arg)
{
    /* virtiofsd's levels: trace is our debug, off our error */
    int level = strcmp(arg, "trace") == 0 ? FSB_LOG_DEBUG
                : strcmp(arg, "off") == 0 ? FSB_LOG_ERROR
                                          : fsb_log_parse_level(arg);
    if (level < 0)
        return fail("unknown log level", arg);
    fsb_log_level = (enum fsb_log_level)level;
    return 0;
}

/* Keys of the legacy -o that need no action: what they enable is always
 * on, or they tune things we decide ourselves. */
static bool legacy_noop(const char *key)
{
    static const char *const keys[] = {
        "flock", "posix_lock", "readdirplus", "no_readdirplus", "announce_submounts",
        "allow_direct_io", "killpriv_v2", "no_killpriv_v2", "timeout", "norace",
        "allow_root", "default_permissions", "writeback_cache",
    };
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (strcmp(key, keys[i]) == 0)
            return true;
    return false;
}

static int legacy_key(struct vhost_options *v, char *key)
{
    char *value = strchr(key, '=');
    if (value)
        *value++ = 0;
    if (value && strcmp(key, "source") == 0)
        return set_shared_dir(v, value);
    if (value && strcmp(key, "overlay") == 0)
        return set_overlay(v, value);
    if (value && strcmp(key, "cache") == 0)
        return parse_cache(value, &v->export.cache);
    if (value && strcmp(key, "log_level") == 0)
        return set_log_level(value);
    if (value && strcmp(key, "sandbox") == 0)
        return set_sandbox(v, value);
    if (strcmp(key, "xattr") == 0 || strcmp(key, "no_xattr") == 0) {
        v->export.no_xattr = key[0] == 'n';
        return 0;
    }
    if (strcmp(key, "writeback") == 0 || strcmp(key, "no_writeback") == 0) {
        v->export.writeback = key[0] != 'n';
        return 0;
    }
    if (strcmp(key, "no_flock") == 0 || strcmp(key, "no_posix_lock") == 0)
        return fail("locks are always served; unsupported -o", key);
    if (legacy_noop(key))
        return 0;
    return fail("unknown -o option", key);
}

/* -o key[=value],key... */
static int parse_legacy(struct vhost_options *v, const char *arg)
{
    char *copy = strdup(arg), *save = NULL;
    int r = copy ? 0 : fail("out of memory parsing", arg);
    for (char *key = copy ? strtok_r(copy, ",", &save) : NULL; key && r == 0;
         key = strtok_r(NULL, ",", &save))
        r = legacy_key(v, key);
    free(copy);
    return r;
}

int vhost_option(struct vhost_options *v, int code, const char *arg)
{
    switch (code) {
    case VOPT_SOCKET_PATH: return set_socket_path(v, arg);
    case VOPT_FD: {
        unsigned fd;
        if (parse_number(arg, 1u << 30, &fd) < 0)
            return -1;
        v->fd = (int)fd;
        v->wanted = true;
        return 0;
    }
    case VOPT_SHARED_DIR: return set_shared_dir(v, arg);
    case VOPT_CACHE: return parse_cache(arg, &v->export.cache);
    case VOPT_READONLY: v->export.readonly = true; return 0;
    case VOPT_XATTR: v->export.no_xattr = false; return 0;
    case VOPT_NO_XATTR: v->export.no_xattr = true; return 0;
    case VOPT_XATTR_MAP: v->export.xattr_map = true; return 0;
    case VOPT_WRITEBACK: v->export.writeback = true; return 0;
    case VOPT_OVERLAY_DIR: return set_overlay(v, arg);
    case VOPT_SANDBOX: return set_sandbox(v, arg);
    case VOPT_SECCOMP: return set_seccomp(v, arg);
    case VOPT_THREAD_POOL_SIZE: return parse_number(arg, 1024, &v->thread_pool_size);
    case VOPT_POLL_US: return parse_number(arg, FSB_MAX_POLL_US, &v->poll_us);
    case VOPT_PRINT_CAPABILITIES:
        puts("{\n  \"type\": \"fs\",\n  \"features\": [\n    \"separate-options\"\n  ]\n}");
        return 1;
    case VOPT_LOG_LEVEL: return set_log_level(arg);
    case VOPT_LEGACY_O: return parse_legacy(v, arg);
    case VOPT_FOREGROUND: return 0; /* we never daemonize */
    case VOPT_DEBUG: fsb_log_level = FSB_LOG_DEBUG; return 0;
    default: return fail("unknown option code", "?");
    }
}

int vhost_options_finish(struct vhost_options *v)
{
    if (!v->wanted && v->have_shared_dir)
        return fail("--shared-dir needs", "--socket-path or --fd");
    if (!v->wanted)
        return 0;
    if (v->socket_path[0] && v->fd >= 0)
        return fail("give one of --socket-path and --fd, not both:", v->socket_path);
    if (!v->have_shared_dir)
        return fail("vhost-user needs the directory to share:", "--shared-dir DIR");
    if (v->export.writeback && (v->export.cache == FSB_CACHE_NEVER ||
                                v->export.cache == FSB_CACHE_METADATA))
        return fail("writeback needs --cache auto or always, not", "never/metadata");
    return 0;
}
