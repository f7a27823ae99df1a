/*
 * service_notify.c - see service_notify.h.
 *
 * The protocol of sd_notify(3), written out rather than linked from
 * libsystemd: a datagram of "KEY=VALUE" lines to the AF_UNIX socket named
 * by $NOTIFY_SOCKET (a path, or '@' for the abstract namespace).  The
 * reason is the sandbox: sd_notify() opens that path at every call, and
 * after pivot_root the path no longer exists (and an abstract name belongs
 * to the network namespace left behind).  A socket connected before the
 * sandbox keeps working through it (send is on the seccomp list), and the
 * daemon needs no library for twenty lines.
 */
#include "fsbridged/service_notify.h"
#include "common/log.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int service_notify_open(void)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path)
        return -1;
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    size_t len = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || len >= sizeof(sun.sun_path)) {
        log_warn("NOTIFY_SOCKET=%s: not a Unix socket path; readiness not reported", path);
        return -1;
    }
    memcpy(sun.sun_path, path, len);
    if (path[0] == '@')
        sun.sun_path[0] = 0;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sun, salen) < 0) {
        log_warn("NOTIFY_SOCKET=%s: %s; readiness not reported", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

void service_notify(int fd, const char *state)
{
    if (fd >= 0 && send(fd, state, strlen(state), MSG_NOSIGNAL) < 0)
        log_warn("telling systemd %s: %s", state, strerror(errno));
}
