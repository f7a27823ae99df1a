/*
 * test_connect_error.c - the line fsbridge-mount prints when it cannot
 * connect (src/mount/connect_error.c), for each errno a connect gives.
 *
 * tests/integration/test_lifecycle.py runs the real failures it can make
 * here (a missing or stale Unix socket, this machine's own vsock CID);
 * the vsock errors that need a vsock host -- "Connection reset by peer"
 * from a host where nothing listens on the port -- are checked here, on
 * the message alone.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/address.h"
#include "common/log.h"
#include "mount/connect_error.h"
#include "unit_check.h"

/* The line log_connect_error() writes to stderr for ADDRESS and ERR. */
static const char *message(const char *address, int err, const char *host)
{
    static char line[1024];
    struct fsb_address addr;
    char why[128];
    if (fsb_address_parse(address, true, &addr, why, sizeof(why)) < 0) {
        snprintf(line, sizeof(line), "bad address %s: %s", address, why);
        return line;
    }
    int pipefd[2], saved = dup(STDERR_FILENO);
    if (pipe(pipefd) < 0 || saved < 0)
        return "pipe failed";
    dup2(pipefd[1], STDERR_FILENO);
    log_connect_error(&addr, err, host);
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(pipefd[1]);
    ssize_t n = read(pipefd[0], line, sizeof(line) - 1);
    close(pipefd[0]);
    line[n > 0 ? n : 0] = '\0';
    return line;
}

static bool has(const char *line, const char *needle)
{
    if (strstr(line, needle))
        return true;
    printf("    %s\n    does not contain: %s\n", line, needle);
    return false;
}

static bool one_line(const char *line)
{
    const char *nl = strchr(line, '\n');
    return nl && nl[1] == '\0';
}

static void test_vsock_nobody_listening(void)
{
    /* What a guest gets from vsock:2:5001 with no fsbridged on the host. */
    const char *m = message("vsock:2:5001", -ECONNRESET, "fsbridged");
    CHECK(one_line(m));
    CHECK(has(m, "cannot connect to vsock:2:5001: no fsbridged answered there"));
    CHECK(has(m, "Connection reset by peer"));
    CHECK(has(m, "--listen vsock:5001"));
    CHECK(has(m, "unix:UDS_PATH_5001"));
    m = message("vsock:2:7000", -ECONNREFUSED, "fsbridged");
    CHECK(has(m, "no fsbridged answered there") && has(m, "--listen vsock:7000"));
    m = message("vsock:5001", -ETIMEDOUT, "matchlock host");
    CHECK(has(m, "no matchlock host answered there"));
}

static void test_vsock_no_device(void)
{
    const char *m = message("vsock:3:5001", -ENODEV, "fsbridged");
    CHECK(one_line(m));
    CHECK(has(m, "no vsock path to CID 3"));
    CHECK(has(m, "vsock device"));
    CHECK(has(m, "No such device"));
    m = message("vsock:2:5001", -EAFNOSUPPORT, "fsbridged");
    CHECK(has(m, "this kernel has no vsock") && has(m, "serial:"));
}

static void test_unix(void)
{
    const char *m = message("unix:/run/x.sock", -ENOENT, "fsbridged");
    CHECK(one_line(m));
    CHECK(has(m, "no socket there") && has(m, "--listen unix:/run/x.sock"));
    m = message("unix:/run/x.sock", -ECONNREFUSED, "fsbridged");
    CHECK(has(m, "no fsbridged listens there") && has(m, "Connection refused"));
    m = message("unix:/run/x.sock", -EACCES, "fsbridged");
    CHECK(has(m, "cannot connect to unix:/run/x.sock: Permission denied\n"));
}

static void test_other_kinds_give_the_errno(void)
{
    const char *m = message("serial:/dev/vport0p1", -ENOENT, "fsbridged");
    CHECK(has(m, "cannot connect to serial:/dev/vport0p1: No such file or directory\n"));
}

int main(void)
{
    fsb_log_init("fsbridge-mount", false);
    static const struct unit_test tests[] = {
        TEST(test_vsock_nobody_listening),
        TEST(test_vsock_no_device),
        TEST(test_unix),
        TEST(test_other_kinds_give_the_errno),
    };
    return RUN_TESTS(tests);
}
