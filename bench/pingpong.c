/*
 * pingpong.c - the cost of the stream transport's extra hop, alone: two
 * processes pass a small message back and forth over a Unix stream socket,
 * each waiting for it as fsbridged and fsbridge-mount do (poll, then read).
 *
 *   pingpong [ROUND_TRIPS [BYTES [SPIN_US]]]
 *       ->   "US_PER_ROUND_TRIP CPU_US_PER_ROUND_TRIP"
 *
 * A FUSE request through passthrough_ll crosses two processes (the program
 * and the daemon, through /dev/fuse); through fsbridge it crosses three,
 * the guest relay passing it on to fsbridged over a socket and the reply
 * back.  What one round trip here costs is what fsbridge pays on every
 * request beyond passthrough_ll's, however fast both servers are.  Built
 * and run by bench/cost.sh; defaults 20000 round trips of 64 bytes (a small
 * FUSE request).
 *
 * SPIN_US (default 0): each side first polls without sleeping for up to
 * that long, as fsbridged's --poll-us does (a fixed window here, to show
 * the effect alone), with sched_yield() between checks as fsbridged does
 * (PINGPONG_NO_YIELD=1: without; on one CPU the spinner then holds the CPU
 * its peer needs to answer).  The CPU time (both processes, user and system) per
 * round trip is printed beside the time, so that spinning's cost shows.
 * Run it under `taskset -c 0` to see both processes on one CPU.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double spin_seconds;
static int yield;

/* Polls without sleeping for up to spin_seconds, then sleeps in poll(). */
static void wait_readable(int fd)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    if (spin_seconds > 0) {
        double until = now() + spin_seconds;
        do {
            if (poll(&p, 1, 0) > 0)
                return;
            if (yield)
                sched_yield();
        } while (now() < until);
    }
    if (poll(&p, 1, -1) < 0)
        die("poll");
}

/* Waits for LEN bytes as the frame reader does: poll, then read. */
static void receive(int fd, char *buf, size_t len)
{
    size_t have = 0;
    while (have < len) {
        wait_readable(fd);
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

static double cpu_seconds(int who)
{
    struct rusage ru;
    getrusage(who, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? strtol(argv[1], NULL, 10) : 20000;
    size_t len = argc > 2 ? (size_t)strtoul(argv[2], NULL, 10) : 64;
    spin_seconds = argc > 3 ? strtod(argv[3], NULL) / 1e6 : 0;
    yield = getenv("PINGPONG_NO_YIELD") == NULL;
    char *buf = calloc(1, len ? len : 1);
    int sv[2];
    if (rounds < 1 || len < 1 || !buf) {
        fprintf(stderr, "usage: pingpong [ROUND_TRIPS [BYTES [SPIN_US]]]\n");
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
    double cpu = cpu_seconds(RUSAGE_SELF) + cpu_seconds(RUSAGE_CHILDREN);
    printf("%.1f %.1f\n", (t1 - t0) * 1e6 / (double)rounds, cpu * 1e6 / (double)rounds);
    return 0;
}
