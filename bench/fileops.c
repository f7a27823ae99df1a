/*
 * fileops.c - the metadata part of bench/bench.sh: creates N empty files in
 * DIR, stats them all, unlinks them all, and prints the three rates.
 *
 *   fileops DIR N   ->   "CREATE_PER_S STAT_PER_S UNLINK_PER_S"
 *
 * A C program so that the numbers measure the filesystem, not an
 * interpreter.  Built by bench.sh with cc -O2.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *path)
{
    perror(path);
    fprintf(stderr, "fileops: %s failed\n", what);
    exit(1);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: fileops DIR N\n");
        return 2;
    }
    const char *dir = argv[1];
    long n = strtol(argv[2], NULL, 10);
    char path[4096];
    struct stat st;
    double t[4];

    t[0] = now();
    for (long i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "%s/f%06ld", dir, i);
        int fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
        if (fd < 0)
            die("create", path);
        close(fd);
    }
    t[1] = now();
    for (long i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "%s/f%06ld", dir, i);
        if (lstat(path, &st) < 0)
            die("stat", path);
    }
    t[2] = now();
    for (long i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "%s/f%06ld", dir, i);
        if (unlink(path) < 0)
            die("unlink", path);
    }
    t[3] = now();
    printf("%.0f %.0f %.0f\n", (double)n / (t[1] - t[0]), (double)n / (t[2] - t[1]),
           (double)n / (t[3] - t[2]));
    return 0;
}
