/*
 * conformance.c - fsb-conformance: main program, runner, manifest, helpers.
 *
 *   fsb-conformance [--skip GROUPS] [--only GROUPS] [--uid N] [--gid N] DIR
 *   fsb-conformance --list
 *
 * Runs every check (see conformance.h) in a child process of its own, in
 * DIR/CHECKNAME, and prints one line per check:
 *
 *   ok NAME
 *   not ok NAME: reason
 *   skip NAME: reason
 *
 * followed by the check's "expect" lines when it passed, and at the end
 *
 *   summary: N ok, N not ok, N skip
 *
 * Exit status: 0 when nothing failed, 1 when a check failed, 2 on a usage
 * error.  Built static so that it runs in a bare initramfs guest.
 */
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "conformance.h"

/* A check that takes longer is killed and fails (a hung request). */
#define CHECK_TIMEOUT 120

static const struct check *const tables[] = {
	file_checks, dir_checks, attr_checks, proc_checks,
};

/* Group names and what each covers: --help prints this. */
static const char *const groups_help[][2] = {
	{ "files", "create/read/write, pwrite/pread, O_APPEND, O_EXCL, O_TRUNC, truncate, sparse, unlinked open files, long names" },
	{ "sync", "fsync, fdatasync, fsync of a directory, syncfs" },
	{ "mmap", "shared writable mmap + msync, read mmap" },
	{ "fallocate", "posix_fallocate, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE" },
	{ "seek", "lseek SEEK_DATA / SEEK_HOLE" },
	{ "copy", "copy_file_range" },
	{ "handles", "name_to_handle_at + open_by_handle_at after the inode is dropped, ESTALE once deleted (needs root)" },
	{ "links", "hard links (nlink, same inode), symlinks and readlink" },
	{ "rename", "rename over files and directories, across directories, RENAME_NOREPLACE, RENAME_EXCHANGE" },
	{ "dirs", "mkdir, rmdir, ENOTEMPTY, ENOTDIR, EISDIR, directory nlink" },
	{ "readdir", "many entries, d_type, telldir/seekdir, listings after changes" },
	{ "xattr", "user.* extended attributes, XATTR_CREATE/REPLACE, ERANGE" },
	{ "acl", "a default ACL replaces the umask and is inherited by subdirectories" },
	{ "attrs", "chmod (setuid, setgid, sticky), utimensat with nanoseconds, UTIME_OMIT/NOW" },
	{ "owner", "chown, lchown, setgid directories (needs root)" },
	{ "perms", "permissions as a non-root uid (setresuid in a child; needs root)" },
	{ "groups", "chown to a supplementary group, creation in its set-group-ID directory (needs root)" },
	{ "locks", "flock and fcntl record locks between processes" },
	{ "fifo", "mkfifo and mknod of a FIFO, data through it between processes" },
	{ "statfs", "statfs values" },
};

/* ---- results ------------------------------------------------------------ */

static FILE *manifest;     /* this check's expectations, printed if it passes */

int fail_at(struct ctx *c, int line, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(c->why, sizeof(c->why), "line %d: ", line);

	va_start(ap, fmt);
	vsnprintf(c->why + n, sizeof(c->why) - n, fmt, ap);
	va_end(ap);
	return CHECK_FAIL;
}

int skip_because(struct ctx *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->why, sizeof(c->why), fmt, ap);
	va_end(ap);
	return CHECK_SKIP;
}

const char *errname(int err)
{
	static char buf[32];
	const char *name = strerrorname_np(err);

	if (name)
		return name;
	snprintf(buf, sizeof(buf), "errno %d", err);
	return buf;
}

/* ---- the manifest ------------------------------------------------------- */

const char *enc(const char *s)
{
	static char bufs[4][4 * 4096];
	static int next;
	char *out = bufs[next++ % 4], *p = out;

	for (; *s && p < out + sizeof(bufs[0]) - 4; s++) {
		unsigned char ch = (unsigned char)*s;
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || strchr("._/-", ch))
			*p++ = (char)ch;
		else
			p += sprintf(p, "%%%02X", ch);
	}
	*p = 0;
	return out;
}

const char *hex(const void *data, size_t len)
{
	static char buf[2 * 8192 + 1];
	const unsigned char *b = data;

	if (len > 8192)
		len = 8192;
	for (size_t i = 0; i < len; i++)
		sprintf(buf + 2 * i, "%02x", b[i]);
	buf[2 * len] = 0;
	return buf;
}

void expect(struct ctx *c, const char *rel, const char *fmt, ...)
{
	va_list ap;

	if (!strcmp(rel, "."))
		fprintf(manifest, "expect %s ", enc(c->name));
	else
		fprintf(manifest, "expect %s/%s ", enc(c->name), enc(rel));
	va_start(ap, fmt);
	vfprintf(manifest, fmt, ap);
	va_end(ap);
	fputc('\n', manifest);
}

void expect_file(struct ctx *c, const char *rel, mode_t mode, const void *data, size_t len)
{
	expect(c, rel, "type=reg mode=%04o size=%zu crc32=%08x uid=%u gid=%u",
	       (unsigned)mode, len, crc32_of(data, len), (unsigned)geteuid(),
	       (unsigned)getegid());
}

void expect_absent(struct ctx *c, const char *rel)
{
	expect(c, rel, "type=none");
}

void expect_symlink(struct ctx *c, const char *rel, const char *target)
{
	expect(c, rel, "type=lnk target=%s", enc(target));
}

/* ---- helpers ------------------------------------------------------------ */

uint32_t crc32_of(const void *data, size_t len)
{
	static uint32_t table[256];
	const unsigned char *b = data;
	uint32_t crc = 0xffffffffu;

	if (!table[1]) {
		for (uint32_t i = 0; i < 256; i++) {
			uint32_t v = i;
			for (int k = 0; k < 8; k++)
				v = (v & 1) ? 0xedb88320u ^ (v >> 1) : v >> 1;
			table[i] = v;
		}
	}
	for (size_t i = 0; i < len; i++)
		crc = table[(crc ^ b[i]) & 0xff] ^ (crc >> 8);
	return crc ^ 0xffffffffu;
}

void *pattern(size_t len, unsigned seed)
{
	unsigned char *buf = malloc(len + 8);
	uint64_t x = 0x9e3779b97f4a7c15ull * (seed + 1);

	if (!buf) {
		perror("fsb-conformance: malloc");
		exit(CHECK_FAIL);
	}
	for (size_t i = 0; i < len; i += 8) {
		/* splitmix64 */
		uint64_t z = (x += 0x9e3779b97f4a7c15ull);
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		z ^= z >> 31;
		memcpy(buf + i, &z, 8);
	}
	return buf;
}

static int write_all(struct ctx *c, int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0)
			FAIL("write: %s", strerror(errno));
		p += n;
		len -= (size_t)n;
	}
	return CHECK_OK;
}

int put(struct ctx *c, const char *path, const void *data, size_t len, mode_t mode)
{
	int fd = SYS(open(path, O_WRONLY | O_CREAT | O_TRUNC, mode));
	int rc = write_all(c, fd, data, len);

	if (close(fd) < 0 && rc == CHECK_OK)
		FAIL("close %s: %s", path, strerror(errno));
	return rc;
}

int touch(struct ctx *c, const char *path, mode_t mode)
{
	int fd = SYS(open(path, O_WRONLY | O_CREAT | O_EXCL, mode));

	SYS(close(fd));
	return CHECK_OK;
}

int same_content(struct ctx *c, const char *path, const void *want, size_t len)
{
	int fd = SYS(open(path, O_RDONLY));
	char *got = malloc(len + 1);
	size_t have = 0;
	ssize_t n;

	while ((n = read(fd, got + have, len + 1 - have)) > 0 && have + (size_t)n <= len)
		have += (size_t)n;
	close(fd);
	if (n < 0)
		FAIL("read %s: %s", path, strerror(errno));
	if (n > 0)
		FAIL("%s is longer than %zu bytes", path, len);
	if (have != len)
		FAIL("%s has %zu bytes, expected %zu", path, have, len);
	for (size_t i = 0; i < len; i++)
		if (got[i] != ((const char *)want)[i])
			FAIL("%s differs at byte %zu", path, i);
	free(got);
	return CHECK_OK;
}

long long ns_of(const struct timespec *ts)
{
	return (long long)ts->tv_sec * 1000000000LL + ts->tv_nsec;
}

int as_user(struct ctx *c, uid_t uid, gid_t gid, mode_t umask_value,
	    int (*fn)(struct ctx *c, void *arg), void *arg)
{
	return as_user_in(c, uid, gid, NULL, 0, umask_value, fn, arg);
}

int as_user_in(struct ctx *c, uid_t uid, gid_t gid, const gid_t *groups, size_t ngroups,
	       mode_t umask_value, int (*fn)(struct ctx *c, void *arg), void *arg)
{
	int pipefd[2], status;
	pid_t pid;
	ssize_t n;

	SYS(pipe(pipefd));
	pid = SYS(fork());
	if (pid == 0) {
		int rc;
		close(pipefd[0]);
		if (setgroups(ngroups, groups) < 0 || setresgid(gid, gid, gid) < 0 ||
		    setresuid(uid, uid, uid) < 0)
			rc = fail_at(c, __LINE__, "cannot become %u:%u: %s", (unsigned)uid,
				     (unsigned)gid, strerror(errno));
		else {
			umask(umask_value);
			rc = fn(c, arg);
		}
		if (rc)
			(void)!write(pipefd[1], c->why, strlen(c->why));
		_exit(rc);
	}
	close(pipefd[1]);
	n = read(pipefd[0], c->why, sizeof(c->why) - 1);
	c->why[n > 0 ? n : 0] = 0;
	close(pipefd[0]);
	SYS(waitpid(pid, &status, 0));
	if (WIFSIGNALED(status))
		FAIL("the process of uid %u died of signal %d", (unsigned)uid, WTERMSIG(status));
	if (WEXITSTATUS(status) != CHECK_OK && !c->why[0])
		FAIL("the process of uid %u exited %d", (unsigned)uid, WEXITSTATUS(status));
	return WEXITSTATUS(status);
}

/* ---- the runner --------------------------------------------------------- */

struct options {
	const char *only, *skip;
	uid_t uid;
	gid_t gid;
};

static bool in_list(const char *list, const char *group)
{
	size_t len = strlen(group);

	for (const char *p = list; p && *p;) {
		const char *end = strchr(p, ',');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		if (n == len && !strncmp(p, group, n))
			return true;
		p = end ? end + 1 : NULL;
	}
	return false;
}

static bool known_group(const char *group)
{
	for (size_t i = 0; i < sizeof(groups_help) / sizeof(groups_help[0]); i++)
		if (!strcmp(groups_help[i][0], group))
			return true;
	return false;
}

/* Every name of a comma list is a group (else a usage message). */
static bool valid_groups(const char *list, const char *option)
{
	char copy[1024];

	snprintf(copy, sizeof(copy), "%s", list);
	for (char *save, *g = strtok_r(copy, ",", &save); g; g = strtok_r(NULL, ",", &save)) {
		if (!known_group(g)) {
			fprintf(stderr, "fsb-conformance: %s: unknown group %s (see --help)\n",
				option, g);
			return false;
		}
	}
	return true;
}

static bool wanted(const struct options *o, const struct check *k)
{
	if (o->only && !in_list(o->only, k->group))
		return false;
	return !in_list(o->skip, k->group);
}

/* In the check's child: run it in its directory, print the outcome. */
static void __attribute__((noreturn)) run_child(const struct check *k, const struct options *o)
{
	struct ctx c = { .name = k->name, .root = geteuid() == 0, .uid = o->uid, .gid = o->gid };
	char *text = NULL;
	size_t text_len = 0;
	int rc;

	setpgid(0, 0);           /* helpers it forks are killed with it */
	alarm(CHECK_TIMEOUT);
	umask(022);
	manifest = open_memstream(&text, &text_len);
	if (chdir(k->name) < 0)
		rc = fail_at(&c, __LINE__, "chdir %s: %s", k->name, strerror(errno));
	else
		rc = k->run(&c);
	fclose(manifest);
	if (rc == CHECK_OK)
		printf("ok %s\n%s", k->name, text);
	else
		printf("%s %s: %s\n", rc == CHECK_SKIP ? "skip" : "not ok", k->name, c.why);
	fflush(stdout);
	_exit(rc);
}

/* Runs one check; returns CHECK_OK, CHECK_FAIL or CHECK_SKIP. */
static int run_check(const struct check *k, const struct options *o)
{
	int status;
	pid_t pid;

	if (mkdir(k->name, 0755) < 0) {
		printf("not ok %s: mkdir %s: %s (run in a fresh directory)\n", k->name, k->name,
		       strerror(errno));
		return CHECK_FAIL;
	}
	fflush(stdout);
	pid = fork();
	if (pid < 0) {
		printf("not ok %s: fork: %s\n", k->name, strerror(errno));
		return CHECK_FAIL;
	}
	if (pid == 0)
		run_child(k, o);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	kill(-pid, SIGKILL);     /* helpers it left behind */
	if (WIFSIGNALED(status)) {
		int sig = WTERMSIG(status);
		printf("not ok %s: killed by signal %d (%s)%s\n", k->name, sig, strsignal(sig),
		       sig == SIGALRM ? ": ran over the time limit" : "");
		return CHECK_FAIL;
	}
	if (WEXITSTATUS(status) > CHECK_SKIP) {
		printf("not ok %s: exited %d\n", k->name, WEXITSTATUS(status));
		return CHECK_FAIL;
	}
	return WEXITSTATUS(status);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: fsb-conformance [--skip GROUPS] [--only GROUPS] [--uid N] [--gid N] DIR\n"
		"       fsb-conformance --list\n"
		"\n"
		"Runs POSIX filesystem checks in DIR (an empty directory on the mount under\n"
		"test), one subdirectory per check, and prints \"ok NAME\", \"not ok NAME: why\"\n"
		"or \"skip NAME: why\" per check, the expectations of each passed check on the\n"
		"host directory (\"expect PATH key=value ...\"), and a summary line.\n"
		"\n"
		"  --only GROUPS  run only these groups (comma separated)\n"
		"  --skip GROUPS  leave these groups out\n"
		"  --uid N, --gid N  the non-root user of the perms group (default 1000:1000)\n"
		"  --list         list the checks and their groups\n"
		"\n"
		"Groups:\n");
	for (size_t i = 0; i < sizeof(groups_help) / sizeof(groups_help[0]); i++)
		fprintf(f, "  %-10s %s\n", groups_help[i][0], groups_help[i][1]);
}

static void list_checks(void)
{
	for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++)
		for (const struct check *k = tables[t]; k->name; k++)
			printf("%-10s %s\n", k->group, k->name);
}

static int parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "only", required_argument, NULL, 'o' },
		{ "skip", required_argument, NULL, 's' },
		{ "uid", required_argument, NULL, 'u' },
		{ "gid", required_argument, NULL, 'g' },
		{ "list", no_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	int opt;

	*o = (struct options){ .uid = 1000, .gid = 1000 };
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'o': o->only = optarg; if (!valid_groups(optarg, "--only")) return 2; break;
		case 's': o->skip = optarg; if (!valid_groups(optarg, "--skip")) return 2; break;
		case 'u': o->uid = (uid_t)strtoul(optarg, NULL, 10); break;
		case 'g': o->gid = (gid_t)strtoul(optarg, NULL, 10); break;
		case 'l': list_checks(); exit(0);
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "fsb-conformance: expected one directory argument\n");
		usage(stderr);
		return 2;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct options o;
	int counts[3] = { 0 };
	int rc = parse_options(argc, argv, &o);

	if (rc)
		return rc;
	setvbuf(stdout, NULL, _IOFBF, 1 << 16);
	if (mkdir(argv[optind], 0755) < 0 && errno != EEXIST) {
		fprintf(stderr, "fsb-conformance: mkdir %s: %s\n", argv[optind], strerror(errno));
		return 2;
	}
	if (chdir(argv[optind]) < 0) {
		fprintf(stderr, "fsb-conformance: %s: %s\n", argv[optind], strerror(errno));
		return 2;
	}
	for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++)
		for (const struct check *k = tables[t]; k->name; k++)
			if (wanted(&o, k))
				counts[run_check(k, &o)]++;
	printf("summary: %d ok, %d not ok, %d skip\n", counts[CHECK_OK], counts[CHECK_FAIL],
	       counts[CHECK_SKIP]);
	fflush(stdout);
	return counts[CHECK_FAIL] ? 1 : 0;
}
