/*
 * fileops.c - the metadata part of bench/bench.sh: creates N empty files in
 * DIR, stats them all, unlinks them all, and prints the three rates.
 *
 *   fileops DIR N   ->   "CREATE_PER_S STAT_PER_S UNLINK_PER_S"
 *   fileops DIR N create|stat|unlink   ->   that one rate (bench/cost.sh
 *                                            counts each step on its own)
 *
 * A C program so that the numbers measure the filesystem, not an
 * interpreter.  Built by bench.sh with cc -O2.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static void file_path(char *path, size_t size, const char *dir, long i)
{
    snprintf(path, size, "%s/f%06ld", dir, i);
}

static void create_files(const char *dir, long n)
{
    char path[4096];
    for (long i = 0; i < n; i++) {
        file_path(path, sizeof(path), dir, i);
        int fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
        if (fd < 0)
            die("create", path);
        close(fd);
    }
}

static void stat_files(const char *dir, long n)
{
    char path[4096];
    struct stat st;
    for (long i = 0; i < n; i++) {
        file_path(path, sizeof(path), dir, i);
        if (lstat(path, &st) < 0)
            die("stat", path);
    }
}

static void unlink_files(const char *dir, long n)
{
    char path[4096];
    for (long i = 0; i < n; i++) {
        file_path(path, sizeof(path), dir, i);
        if (unlink(path) < 0)
            die("unlink", path);
    }
}

static const struct {
    const char *name;
    void (*run)(const char *dir, long n);
} steps[] = { { "create", create_files }, { "stat", stat_files }, { "unlink", unlink_files } };
#define NSTEPS (sizeof(steps) / sizeof(steps[0]))

/* Runs step I (or all of them when ONLY is NULL), printing each rate. */
static int run_steps(const char *dir, long n, const char *only)
{
    bool ran = false;
    for (size_t i = 0; i < NSTEPS; i++) {
        if (only && strcmp(only, steps[i].name) != 0)
            continue;
        double t0 = now();
        steps[i].run(dir, n);
        printf("%s%.0f", ran ? " " : "", (double)n / (now() - t0));
        ran = true;
    }
    printf("\n");
    return ran ? 0 : 2;
}

int main(int argc, char **argv)
{
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: fileops DIR N [create|stat|unlink]\n");
        return 2;
    }
    long n = strtol(argv[2], NULL, 10);
    int rc = run_steps(argv[1], n, argc == 4 ? argv[3] : NULL);
    if (rc)
        fprintf(stderr, "fileops: unknown step '%s'\n", argv[3]);
    return rc;
}
