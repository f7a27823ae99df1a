/*
 * guestbench.c - the data workloads of bench/vm, run inside the QEMU guest
 * (static: the guest is a bare initramfs).  The metadata workload is
 * bench/fileops.c, built static for the guest too.
 *
 *   guestbench seqwrite FILE MIB   1 MiB writes of MIB MiB, then fsync: MiB/s
 *   guestbench seqread FILE        1 MiB reads to the end: MiB/s
 *   guestbench randread FILE N     N preads of 4 KiB at distinct random
 *                                  4 KiB-aligned offsets: IOPS
 *   guestbench time CMD [ARG...]   runs CMD: seconds of wall clock
 *
 * Each prints one number on stdout; errors go to stderr with exit status 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BLOCK (1 << 20)
#define PAGE 4096

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *path)
{
	fprintf(stderr, "guestbench: %s %s: %s\n", what, path, strerror(errno));
	exit(1);
}

static char *block(void)
{
	char *buf = aligned_alloc(PAGE, BLOCK);

	if (!buf)
		die("malloc", "");
	for (size_t i = 0; i < BLOCK; i++)      /* not zeros: no filesystem shortcut */
		buf[i] = (char)(i * 131 + (i >> 12));
	return buf;
}

static int seqwrite(const char *path, long mib)
{
	char *buf = block();
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	double t0 = now();

	if (fd < 0)
		die("open", path);
	for (long i = 0; i < mib; i++)
		if (write(fd, buf, BLOCK) != BLOCK)
			die("write", path);
	if (fsync(fd) < 0)
		die("fsync", path);
	close(fd);
	printf("%.1f\n", (double)mib / (now() - t0));
	return 0;
}

static int seqread(const char *path)
{
	char *buf = block();
	int fd = open(path, O_RDONLY);
	double t0 = now();
	long long total = 0;
	ssize_t n;

	if (fd < 0)
		die("open", path);
	while ((n = read(fd, buf, BLOCK)) > 0)
		total += n;
	if (n < 0)
		die("read", path);
	close(fd);
	printf("%.1f\n", (double)total / BLOCK / (now() - t0));
	return 0;
}

/* Visits the file's pages in a fixed pseudo-random order, each at most
 * once: i * stride mod pages, stride odd and pages a power of two. */
static int randread(const char *path, long count)
{
	char *buf = block();
	struct stat st;
	int fd = open(path, O_RDONLY);
	uint64_t pages = 1, stride = 0x9e3779b1;
	double t0;

	if (fd < 0 || fstat(fd, &st) < 0)
		die("open", path);
	while (pages * 2 <= (uint64_t)st.st_size / PAGE)
		pages *= 2;
	if ((uint64_t)count > pages)
		count = (long)pages;
	t0 = now();
	for (long i = 0; i < count; i++) {
		off_t off = (off_t)(((uint64_t)i * stride) % pages) * PAGE;
		if (pread(fd, buf, PAGE, off) != PAGE)
			die("pread", path);
	}
	close(fd);
	printf("%.0f\n", (double)count / (now() - t0));
	return 0;
}

static int timed(char **argv)
{
	double t0 = now();
	int status;
	pid_t pid = fork();

	if (pid == 0) {
		execvp(argv[0], argv);
		die("exec", argv[0]);
	}
	if (pid < 0 || waitpid(pid, &status, 0) < 0)
		die("run", argv[0]);
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		fprintf(stderr, "guestbench: %s failed (status %#x)\n", argv[0], status);
		return 1;
	}
	printf("%.2f\n", now() - t0);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "seqwrite"))
		return seqwrite(argv[2], strtol(argv[3], NULL, 10));
	if (argc == 3 && !strcmp(argv[1], "seqread"))
		return seqread(argv[2]);
	if (argc == 4 && !strcmp(argv[1], "randread"))
		return randread(argv[2], strtol(argv[3], NULL, 10));
	if (argc >= 3 && !strcmp(argv[1], "time"))
		return timed(argv + 2);
	fprintf(stderr, "usage: guestbench seqwrite FILE MIB | seqread FILE | "
		"randread FILE N | time CMD [ARG...]\n");
	return 2;
}
