/*
 * pingpong.c - the cost of the stream transport's extra hop, alone: two
 * processes pass a small message back and forth over a Unix stream socket,
 * each waiting for it as fsbridged and fsbridge-mount do (poll, then read).
 *
 *   pingpong [ROUND_TRIPS [BYTES]]   ->   "US_PER_ROUND_TRIP"
 *
 * A FUSE request through passthrough_ll crosses two processes (the program
 * and the daemon, through /dev/fuse); through fsbridge it crosses three,
 * the guest relay passing it on to fsbridged over a socket and the reply
 * back.  What one round trip here costs is what fsbridge pays on every
 * request beyond passthrough_ll's, however fast both servers are.  Built
 * and run by bench/cost.sh; defaults 20000 round trips of 64 bytes (a small
 * FUSE request).
 */
#define _GNU_SOURCE
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what)
{
    perror(what);
    exit(1);
}

/* Waits for LEN bytes as the frame reader does: poll, then read. */
static void receive(int fd, char *buf, size_t len)
{
    size_t have = 0;
    while (have < len) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, -1) < 0)
            die("poll");
        ssize_t n = read(fd, buf + have, len - have);
        if (n <= 0)
            die("read");
        have += (size_t)n;
    }
}

static void send_all(int fd, const char *buf, size_t len)
{
    if (write(fd, buf, len) != (ssize_t)len)
        die("write");
}

static void echo_loop(int fd, long rounds, char *buf, size_t len)
{
    for (long i = 0; i < rounds; i++) {
        receive(fd, buf, len);
        send_all(fd, buf, len);
    }
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? strtol(argv[1], NULL, 10) : 20000;
    size_t len = argc > 2 ? (size_t)strtoul(argv[2], NULL, 10) : 64;
    char *buf = calloc(1, len ? len : 1);
    int sv[2];
    if (rounds < 1 || len < 1 || !buf) {
        fprintf(stderr, "usage: pingpong [ROUND_TRIPS [BYTES]]\n");
        return 2;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        die("socketpair");
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        close(sv[0]);
        echo_loop(sv[1], rounds, buf, len);
        _exit(0);
    }
    close(sv[1]);
    double t0 = now();
    for (long i = 0; i < rounds; i++) {
        send_all(sv[0], buf, len);
        receive(sv[0], buf, len);
    }
    double t1 = now();
    waitpid(pid, NULL, 0);
    printf("%.1f\n", (t1 - t0) * 1e6 / (double)rounds);
    return 0;
}
