/*
 * address.c - parsing and opening the addresses of address.h.
 */
#include "common/address.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

static bool parse_u32(const char *s, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || v > UINT32_MAX || *s == '-')
        return false;
    *out = (uint32_t)v;
    return true;
}

static int parse_vsock(const char *rest, bool for_client, struct fsb_address *out,
                       char *err, size_t errlen)
{
    const char *colon = strchr(rest, ':');
    out->kind = FSB_ADDR_VSOCK;
    out->cid = for_client ? FSB_DEFAULT_VSOCK_CID : VMADDR_CID_ANY;
    if (colon && for_client) {
        char cid[16];
        size_t n = (size_t)(colon - rest);
        if (n >= sizeof(cid)) {
            snprintf(err, errlen, "bad vsock CID in '%s'", out->text);
            return -1;
        }
        memcpy(cid, rest, n);
        cid[n] = 0;
        if (!parse_u32(cid, &out->cid)) {
            snprintf(err, errlen, "bad vsock CID in '%s'", out->text);
            return -1;
        }
        rest = colon + 1;
    }
    if (!parse_u32(rest, &out->port)) {
        snprintf(err, errlen, "bad vsock port in '%s' (expected %s)", out->text,
                 for_client ? "vsock:CID:PORT" : "vsock:PORT");
        return -1;
    }
    return 0;
}

static int parse_path(const char *rest, enum fsb_address_kind kind, struct fsb_address *out,
                      char *err, size_t errlen)
{
    if (!*rest || strlen(rest) >= sizeof(out->path)) {
        snprintf(err, errlen, "bad path in '%s' (empty or longer than %zu bytes)", out->text,
                 sizeof(out->path) - 1);
        return -1;
    }
    out->kind = kind;
    strcpy(out->path, rest);
    return 0;
}

int fsb_address_parse(const char *text, bool for_client, struct fsb_address *out,
                      char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    out->fd = -1;
    out->text = text;
    if (strncmp(text, "unix:", 5) == 0)
        return parse_path(text + 5, FSB_ADDR_UNIX, out, err, errlen);
    if (strncmp(text, "vsock:", 6) == 0)
        return parse_vsock(text + 6, for_client, out, err, errlen);
    if (for_client && strncmp(text, "serial:", 7) == 0)
        return parse_path(text + 7, FSB_ADDR_SERIAL, out, err, errlen);
    if (strncmp(text, "fd:", 3) == 0) {
        uint32_t fd;
        if (!parse_u32(text + 3, &fd) || fd > INT32_MAX) {
            snprintf(err, errlen, "bad file descriptor in '%s'", text);
            return -1;
        }
        out->kind = FSB_ADDR_FD;
        out->fd = (int)fd;
        return 0;
    }
    snprintf(err, errlen, "unknown address '%s' (expected %s)", text,
             for_client ? "vsock:CID:PORT, unix:PATH, serial:DEVICE or fd:N"
                        : "unix:PATH, vsock:PORT or fd:N");
    return -1;
}

static void fill_sockaddr_un(struct sockaddr_un *sun, const char *path)
{
    memset(sun, 0, sizeof(*sun));
    sun->sun_family = AF_UNIX;
    strcpy(sun->sun_path, path);
}

/* A Unix socket path that exists: a live listener is an error, a stale
 * socket file is removed, anything else is left alone and refused. */
static int clear_stale_unix_socket(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISSOCK(st.st_mode))
        return -EEXIST;
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe < 0)
        return -errno;
    struct sockaddr_un sun;
    fill_sockaddr_un(&sun, path);
    int live = connect(probe, (struct sockaddr *)&sun, sizeof(sun)) == 0;
    close(probe);
    if (live)
        return -EADDRINUSE;
    return unlink(path) < 0 ? -errno : 0;
}

static int listen_on(int domain, const struct sockaddr *sa, socklen_t len)
{
    int fd = socket(domain, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (bind(fd, sa, len) < 0 || listen(fd, 64) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

/*
 * bind() creates the socket file with 0777 & ~umask, so a umask of the
 * complement gives exactly ACCESS's mode, whatever the caller's umask (a
 * connect needs write permission: a group bit lost to umask 022 would
 * lock the group out).  umask is per process: this runs at start-up,
 * before any thread.  The group is changed between bind() and listen(),
 * while a connect() is still refused.
 */
static int listen_unix(const char *path, const struct fsb_socket_access *access)
{
    int err = clear_stale_unix_socket(path);
    if (err < 0)
        return err;
    struct sockaddr_un sun;
    fill_sockaddr_un(&sun, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    mode_t old = umask(~access->mode & 0777);
    err = bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ? -errno : 0;
    umask(old);
    if (err) {
        close(fd);
        return err;
    }
    if (access->gid != (gid_t)-1 &&
        fchownat(AT_FDCWD, path, (uid_t)-1, access->gid, AT_SYMLINK_NOFOLLOW) < 0)
        err = -errno;
    if (!err && listen(fd, 64) < 0)
        err = -errno;
    if (err) {
        unlink(path);
        close(fd);
        return err;
    }
    return fd;
}

int fsb_address_listen(const struct fsb_address *addr, const struct fsb_socket_access *access)
{
    switch (addr->kind) {
    case FSB_ADDR_UNIX:
        return listen_unix(addr->path, access);
    case FSB_ADDR_VSOCK: {
        struct sockaddr_vm svm = { .svm_family = AF_VSOCK, .svm_cid = addr->cid,
                                   .svm_port = addr->port };
        return listen_on(AF_VSOCK, (struct sockaddr *)&svm, sizeof(svm));
    }
    case FSB_ADDR_FD:
        return fcntl(addr->fd, F_GETFD) < 0 ? -EBADF : addr->fd;
    case FSB_ADDR_SERIAL:
        break;
    }
    return -EINVAL;
}

/* A serial port carries raw bytes: no echo, no line discipline. */
static int open_serial(const char *path)
{
    int fd = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct termios tio;
    if (isatty(fd) && tcgetattr(fd, &tio) == 0) {
        cfmakeraw(&tio);
        tcsetattr(fd, TCSANOW, &tio);
    }
    return fd;
}

static int connect_to(int domain, const struct sockaddr *sa, socklen_t len)
{
    int fd = socket(domain, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, sa, len) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

int fsb_address_connect(const struct fsb_address *addr)
{
    switch (addr->kind) {
    case FSB_ADDR_UNIX: {
        struct sockaddr_un sun;
        fill_sockaddr_un(&sun, addr->path);
        return connect_to(AF_UNIX, (struct sockaddr *)&sun, sizeof(sun));
    }
    case FSB_ADDR_VSOCK: {
        struct sockaddr_vm svm = { .svm_family = AF_VSOCK, .svm_cid = addr->cid,
                                   .svm_port = addr->port };
        return connect_to(AF_VSOCK, (struct sockaddr *)&svm, sizeof(svm));
    }
    case FSB_ADDR_SERIAL:
        return open_serial(addr->path);
    case FSB_ADDR_FD:
        return fcntl(addr->fd, F_GETFD) < 0 ? -EBADF : addr->fd;
    }
    return -EINVAL;
}

int fsb_socket_file_open(const char *path, struct fsb_socket_file *f)
{
    const char *slash = strrchr(path, '/');
    char dir[sizeof(f->name)];
    f->dirfd = -1;
    if (!slash)
        strcpy(dir, ".");
    else if (slash == path)
        strcpy(dir, "/");
    else
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
    snprintf(f->name, sizeof(f->name), "%s", slash ? slash + 1 : path);
    f->dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    return f->dirfd < 0 ? -errno : 0;
}

void fsb_socket_file_remove(struct fsb_socket_file *f)
{
    if (f->dirfd < 0)
        return;
    unlinkat(f->dirfd, f->name, 0);
    close(f->dirfd);
    f->dirfd = -1;
}
