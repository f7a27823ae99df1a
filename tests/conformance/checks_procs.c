/*
 * checks_procs.c - what needs a second process: permissions as a non-root
 * user (also in a supplementary group), locks between processes, FIFOs
 * (groups perms, groups, locks, fifo).
 *
 * A helper process talks to the check over a pipe, one line per step, so
 * that the check can see that a lock waiter is still waiting (no line yet)
 * and that it got the lock once released (its line arrives).  Every read
 * of a line has a deadline.
 */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "conformance.h"

/* ---- helper processes --------------------------------------------------- */

struct helper {
	pid_t pid;
	int from;                /* the helper's lines */
	int to;                  /* "go" from the check */
	char buf[512];
	size_t len;
};

/* In the helper: one line to the check. */
static void say(int fd, const char *fmt, ...)
{
	char line[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	line[n++] = '\n';
	(void)!write(fd, line, (size_t)n);
}

/* In the helper: wait until the check says go on. */
static void wait_go(int in)
{
	char ch;

	(void)!read(in, &ch, 1);
}

static int start_helper(struct ctx *c, struct helper *h,
			void (*fn)(int out, int in, void *arg), void *arg)
{
	int up[2], down[2];

	SYS(pipe(up));
	SYS(pipe(down));
	h->len = 0;
	h->pid = SYS(fork());
	if (h->pid == 0) {
		close(up[0]);
		close(down[1]);
		fn(up[1], down[0], arg);
		_exit(0);
	}
	close(up[1]);
	close(down[0]);
	h->from = up[0];
	h->to = down[1];
	return CHECK_OK;
}

static int tell_go(struct ctx *c, struct helper *h)
{
	SYS(write(h->to, "g", 1));
	return CHECK_OK;
}

/* The helper's next line within timeout_ms into `line`; 0 when none came. */
static int next_line(struct helper *h, char *line, size_t size, int timeout_ms)
{
	for (;;) {
		char *nl = memchr(h->buf, '\n', h->len);
		struct pollfd pfd = { .fd = h->from, .events = POLLIN };
		ssize_t n;

		if (nl) {
			size_t k = (size_t)(nl - h->buf);
			snprintf(line, size, "%.*s", (int)k, h->buf);
			memmove(h->buf, nl + 1, h->len - k - 1);
			h->len -= k + 1;
			return 1;
		}
		if (poll(&pfd, 1, timeout_ms) <= 0)
			return 0;
		n = read(h->from, h->buf + h->len, sizeof(h->buf) - 1 - h->len);
		if (n <= 0)
			return 0;
		h->len += (size_t)n;
	}
}

static int want_line(struct ctx *c, struct helper *h, const char *want)
{
	char line[256];

	REQUIRE(next_line(h, line, sizeof(line), 10000), "helper: no \"%s\" within 10 s", want);
	REQUIRE(!strcmp(line, want), "helper: \"%s\", expected \"%s\"", line, want);
	return CHECK_OK;
}

/* The helper says nothing for `ms`: it is still waiting. */
static int want_silence(struct ctx *c, struct helper *h, int ms)
{
	char line[256];

	REQUIRE(!next_line(h, line, sizeof(line), ms), "helper: \"%s\" while it should wait", line);
	return CHECK_OK;
}

static int finish_helper(struct ctx *c, struct helper *h)
{
	int status;

	close(h->from);
	close(h->to);
	SYS(waitpid(h->pid, &status, 0));
	REQUIRE(WIFEXITED(status) && WEXITSTATUS(status) == 0, "helper ended with status %#x",
		status);
	return CHECK_OK;
}

/* ---- perms (root: another user) ----------------------------------------- */

static int put_mode(struct ctx *c, const char *path, const char *data, mode_t mode)
{
	TRY(put(c, path, data, strlen(data), mode));
	SYS(chmod(path, mode));             /* exactly, whatever the umask */
	return CHECK_OK;
}

static int denied_steps(struct ctx *c, void *arg)
{
	(void)arg;
	FAILS_WITH(open("secret", O_RDONLY), EACCES);
	FAILS_WITH(open("secret", O_WRONLY), EACCES);
	FAILS_WITH(open("rootdir/new", O_WRONLY | O_CREAT | O_EXCL, 0644), EACCES);
	FAILS_WITH(mkdir("rootdir/newdir", 0755), EACCES);
	FAILS_WITH(unlink("rootdir/readable"), EACCES);
	FAILS_WITH(rename("rootdir/readable", "rootdir/moved"), EACCES);
	FAILS_WITH(open("rootdir/readable", O_WRONLY), EACCES);
	FAILS_WITH(truncate("rootdir/readable", 0), EACCES);
	TRY(same_content(c, "rootdir/readable", "public", 6));
	return CHECK_OK;
}

static int check_perms_denied(struct ctx *c)
{
	if (!c->root)
		SKIP("acting as another user needs root");
	TRY(put_mode(c, "secret", "root only", 0600));
	SYS(mkdir("rootdir", 0755));
	TRY(put_mode(c, "rootdir/readable", "public", 0644));
	TRY(as_user(c, c->uid, c->gid, 022, denied_steps, NULL));
	expect_file(c, "secret", 0600, "root only", 9);
	expect(c, "rootdir", "type=dir entries=1");
	expect_file(c, "rootdir/readable", 0644, "public", 6);
	return CHECK_OK;
}

static int user_creates(struct ctx *c, void *arg)
{
	int fd;

	(void)arg;
	fd = SYS(open("home/file", O_WRONLY | O_CREAT | O_EXCL, 0666));
	SYS(write(fd, "written by the user", 19));
	SYS(close(fd));
	SYS(mkdir("home/dir", 0777));
	SYS(symlink("file", "home/link"));
	SYS(mkfifo("home/fifo", 0666));
	return CHECK_OK;
}

static int user_creates_private(struct ctx *c, void *arg)
{
	(void)arg;
	TRY(touch(c, "home/private", 0666));
	SYS(mkdir("home/privdir", 0777));
	return CHECK_OK;
}

static int check_perms_owner(struct ctx *c)
{
	const char *names[] = { "home/file", "home/dir", "home/link", "home/fifo" };
	struct stat st;

	if (!c->root)
		SKIP("acting as another user needs root");
	SYS(mkdir("home", 0755));
	SYS(chown("home", c->uid, c->gid));
	TRY(as_user(c, c->uid, c->gid, 022, user_creates, NULL));
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		SYS(lstat(names[i], &st));
		REQUIRE(st.st_uid == c->uid && st.st_gid == c->gid, "%s: owner %u:%u", names[i],
			st.st_uid, st.st_gid);
	}
	TRY(as_user(c, c->uid, c->gid, 077, user_creates_private, NULL));
	SYS(stat("home/private", &st));
	REQUIRE((st.st_mode & 07777) == 0600, "umask 077: mode %04o", st.st_mode & 07777);
	expect(c, "home/file", "type=reg mode=0644 uid=%u gid=%u size=19 crc32=%08x", c->uid,
	       c->gid, crc32_of("written by the user", 19));
	expect(c, "home/dir", "type=dir mode=0755 uid=%u gid=%u", c->uid, c->gid);
	expect(c, "home/link", "type=lnk target=file uid=%u gid=%u", c->uid, c->gid);
	expect(c, "home/fifo", "type=fifo mode=0644 uid=%u gid=%u", c->uid, c->gid);
	expect(c, "home/private", "type=reg mode=0600 uid=%u", c->uid);
	expect(c, "home/privdir", "type=dir mode=0700 uid=%u", c->uid);
	return CHECK_OK;
}

static int user_changes_attrs(struct ctx *c, void *arg)
{
	struct timespec t[2] = { { 1000000000, 0 }, { 1000000000, 0 } };
	struct timespec five[2] = { { 5, 0 }, { 5, 0 } };
	int fd;

	(void)arg;
	TRY(touch(c, "home/mine", 0644));
	SYS(chmod("home/mine", 0600));
	SYS(utimensat(AT_FDCWD, "home/mine", t, 0));
	FAILS_WITH(chown("home/mine", 0, 0), EPERM);          /* giving away */
	FAILS_WITH(chmod("rootfile", 0777), EPERM);           /* not the owner */
	FAILS_WITH(utimensat(AT_FDCWD, "rootfile", five, 0), EPERM);
	fd = SYS(open("rootfile", O_WRONLY | O_APPEND));      /* 0666: allowed */
	SYS(write(fd, "w", 1));
	SYS(close(fd));
	return CHECK_OK;
}

static int check_perms_attrs(struct ctx *c)
{
	if (!c->root)
		SKIP("acting as another user needs root");
	SYS(mkdir("home", 0755));
	SYS(chown("home", c->uid, c->gid));
	TRY(put_mode(c, "rootfile", "r", 0666));
	TRY(as_user(c, c->uid, c->gid, 022, user_changes_attrs, NULL));
	expect(c, "home/mine", "type=reg mode=0600 uid=%u mtime=1000000000000000000", c->uid);
	expect_file(c, "rootfile", 0666, "rw", 2);
	return CHECK_OK;
}

/* A non-owner who may write a set-user-ID or set-group-ID file writes it,
 * and the write clears the bits (no CAP_FSETID), as ext4 does. */
static int user_writes_setid_files(struct ctx *c, void *arg)
{
	const char *names[] = { "suid", "sgid", "both" };

	(void)arg;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		int fd = SYS(open(names[i], O_WRONLY | O_APPEND));
		SYS(write(fd, "w", 1));
		SYS(close(fd));
	}
	SYS(truncate("trunc", 1));
	return CHECK_OK;
}

static int check_setid_write(struct ctx *c)
{
	struct stat st;

	if (!c->root)
		SKIP("acting as another user needs root");
	TRY(put_mode(c, "suid", "r", 04777));
	TRY(put_mode(c, "sgid", "r", 02777));
	TRY(put_mode(c, "both", "r", 06777));
	TRY(put_mode(c, "trunc", "rr", 06777));
	TRY(as_user(c, c->uid, c->gid, 022, user_writes_setid_files, NULL));
	SYS(stat("suid", &st));
	REQUIRE((st.st_mode & 07777) == 0777, "suid after a write: mode %04o", st.st_mode & 07777);
	SYS(stat("trunc", &st));
	REQUIRE((st.st_mode & 07777) == 0777, "after a truncate: mode %04o", st.st_mode & 07777);
	expect_file(c, "suid", 0777, "rw", 2);
	expect_file(c, "sgid", 0777, "rw", 2);
	expect_file(c, "both", 0777, "rw", 2);
	expect_file(c, "trunc", 0777, "r", 1);
	return CHECK_OK;
}

/* A program its user may execute but not read runs (ext4: generic/126). */
static int user_runs_exec_only(struct ctx *c, void *arg)
{
	int status;
	pid_t pid;

	(void)arg;
	pid = SYS(fork());
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		dup2(null, STDOUT_FILENO);
		execl("./prog", "prog", "--help", (char *)NULL);
		_exit(126);
	}
	SYS(waitpid(pid, &status, 0));
	REQUIRE(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		"the execute-only program did not run (status %#x)", status);
	FAILS_WITH(open("prog", O_RDONLY), EACCES);
	return CHECK_OK;
}

static int check_exec_only(struct ctx *c)
{
	static char buf[16 * 1024 * 1024];
	size_t have = 0;
	ssize_t n;
	int fd;

	if (!c->root)
		SKIP("acting as another user needs root");
	fd = SYS(open("/proc/self/exe", O_RDONLY));
	while ((n = read(fd, buf + have, sizeof(buf) - have)) > 0)
		have += (size_t)n;
	SYS(close(fd));
	REQUIRE(n == 0, "reading /proc/self/exe: %s", n < 0 ? strerror(errno) : "over 16 MiB");
	TRY(put_mode(c, "prog", "", 0700));
	fd = SYS(open("prog", O_WRONLY | O_TRUNC));
	REQUIRE(write(fd, buf, have) == (ssize_t)have, "writing prog: %s", strerror(errno));
	SYS(close(fd));
	SYS(chmod("prog", 0111));
	TRY(as_user(c, c->uid, c->gid, 022, user_runs_exec_only, NULL));
	expect(c, "prog", "type=reg mode=0111 uid=0 size=%zu", have);
	return CHECK_OK;
}

static int user_in_sticky_dir(struct ctx *c, void *arg)
{
	(void)arg;
	FAILS_WITH(unlink("tmp/roots"), EPERM);
	FAILS_WITH(rename("tmp/roots", "tmp/stolen"), EPERM);
	TRY(touch(c, "tmp/users", 0644));
	SYS(rename("tmp/users", "tmp/users2"));
	SYS(unlink("tmp/users2"));
	return CHECK_OK;
}

static int check_sticky_dir(struct ctx *c)
{
	if (!c->root)
		SKIP("acting as another user needs root");
	SYS(mkdir("tmp", 0755));
	SYS(chmod("tmp", 01777));
	TRY(put_mode(c, "tmp/roots", "r", 0666));
	TRY(as_user(c, c->uid, c->gid, 022, user_in_sticky_dir, NULL));
	expect(c, "tmp", "type=dir mode=1777 entries=1");
	expect_file(c, "tmp/roots", 0666, "r", 1);
	return CHECK_OK;
}

static int group_member_steps(struct ctx *c, void *arg)
{
	(void)arg;
	TRY(same_content(c, "groupfile", "for the group", 13));
	TRY(touch(c, "groupdir/f", 0666));
	FAILS_WITH(open("groupfile", O_WRONLY), EACCES);
	return CHECK_OK;
}

static int outsider_steps(struct ctx *c, void *arg)
{
	(void)arg;
	FAILS_WITH(open("groupfile", O_RDONLY), EACCES);
	FAILS_WITH(open("groupdir/g", O_WRONLY | O_CREAT | O_EXCL, 0666), EACCES);
	return CHECK_OK;
}

static int check_group_perms(struct ctx *c)
{
	const gid_t group = 1234;

	if (!c->root)
		SKIP("acting as another user needs root");
	TRY(put_mode(c, "groupfile", "for the group", 0640));
	SYS(chown("groupfile", 0, group));
	SYS(mkdir("groupdir", 0755));
	SYS(chown("groupdir", 0, group));
	SYS(chmod("groupdir", 0770));
	TRY(as_user(c, c->uid, group, 022, group_member_steps, NULL));
	TRY(as_user(c, c->uid, c->gid, 022, outsider_steps, NULL));
	expect(c, "groupdir", "type=dir mode=0770 entries=1");
	expect(c, "groupdir/f", "type=reg mode=0644 uid=%u gid=%u", c->uid, group);
	expect(c, "groupfile", "type=reg mode=0640 uid=0 gid=%u", group);
	return CHECK_OK;
}

/* ---- groups (root: a user in a supplementary group) ---------------------
 * FUSE requests carry the caller's primary gid only; the guest kernel has
 * checked membership of the others (default_permissions) and names the
 * group of a set-group-ID directory (FUSE_CREATE_SUPP_GROUP). */

#define SUPP_GID 1235u  /* the user's, as a supplementary group only */
#define OTHER_GID 1236u /* not the user's */

static int owner_gives_to_his_group(struct ctx *c, void *arg)
{
	(void)arg;
	TRY(touch(c, "home/file", 0644));
	SYS(mkdir("home/dir", 0755));
	SYS(symlink("file", "home/link"));
	SYS(chown("home/file", (uid_t)-1, SUPP_GID));
	SYS(chown("home/dir", (uid_t)-1, SUPP_GID));
	SYS(lchown("home/link", (uid_t)-1, SUPP_GID));      /* the link itself */
	FAILS_WITH(chown("home/dir", (uid_t)-1, OTHER_GID), EPERM);
	FAILS_WITH(lchown("home/link", (uid_t)-1, OTHER_GID), EPERM);
	return CHECK_OK;
}

/* The owner may give a file, a directory or a symlink to any group he is
 * in (pjdfstest chown/00, 05), not to another. */
static int check_chown_supp_group(struct ctx *c)
{
	gid_t groups[] = { SUPP_GID };

	if (!c->root)
		SKIP("acting as another user needs root");
	SYS(mkdir("home", 0755));
	SYS(chown("home", c->uid, c->gid));
	TRY(as_user_in(c, c->uid, c->gid, groups, 1, 022, owner_gives_to_his_group, NULL));
	expect(c, "home/file", "type=reg uid=%u gid=%u", c->uid, SUPP_GID);
	expect(c, "home/dir", "type=dir uid=%u gid=%u", c->uid, SUPP_GID);
	expect(c, "home/link", "type=lnk target=file uid=%u gid=%u", c->uid, SUPP_GID);
	return CHECK_OK;
}

static int member_creates(struct ctx *c, void *arg)
{
	int fd;

	(void)arg;
	fd = SYS(open("team/file", O_WRONLY | O_CREAT | O_EXCL, 02775));
	SYS(close(fd));
	SYS(mkdir("team/dir", 02775));
	SYS(mknod("team/node", S_IFREG | 02775, 0));
	SYS(mkfifo("team/fifo", 0664));
	return CHECK_OK;
}

/* Whether the running kernel is older than MAJOR.MINOR. */
static bool kernel_before(int major, int minor)
{
	struct utsname u;
	int a = 0, b = 0;

	return uname(&u) == 0 && sscanf(u.release, "%d.%d", &a, &b) == 2 &&
	       (a < major || (a == major && b < minor));
}

/* In a set-group-ID directory of a group the caller is in as a
 * supplementary group, what he makes takes that group and keeps the
 * set-group-ID bit he asked for (he is in the file's group).  A FUSE guest
 * kernel names that group to the daemon from Linux 6.2 on (protocol 7.38,
 * FUSE_CREATE_SUPP_GROUP); before, the host cannot know. */
static int check_setgid_dir_supp_member(struct ctx *c)
{
	gid_t groups[] = { SUPP_GID };
	const char *names[] = { "team/file", "team/dir", "team/node", "team/fifo" };
	struct stat st;

	if (!c->root)
		SKIP("acting as another user needs root");
	SYS(mkdir("team", 0777));
	SYS(chown("team", 0, SUPP_GID));
	SYS(chmod("team", 02777));
	TRY(as_user_in(c, c->uid, c->gid, groups, 1, 0, member_creates, NULL));
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		SYS(lstat(names[i], &st));
		if (S_ISREG(st.st_mode) && !(st.st_mode & S_ISGID) && kernel_before(6, 2))
			SKIP("%s lost its set-group-ID bit: a FUSE guest before Linux 6.2 has no "
			     "FUSE_CREATE_SUPP_GROUP", names[i]);
		REQUIRE(st.st_gid == SUPP_GID && (S_ISFIFO(st.st_mode) || (st.st_mode & S_ISGID)),
			"%s: group %u, mode %04o", names[i], st.st_gid, st.st_mode & 07777);
	}
	expect(c, "team/file", "type=reg mode=2775 uid=%u gid=%u", c->uid, SUPP_GID);
	expect(c, "team/dir", "type=dir mode=2775 uid=%u gid=%u", c->uid, SUPP_GID);
	expect(c, "team/node", "type=reg mode=2775 uid=%u gid=%u", c->uid, SUPP_GID);
	expect(c, "team/fifo", "type=fifo mode=0664 uid=%u gid=%u", c->uid, SUPP_GID);
	return CHECK_OK;
}

/* ---- locks -------------------------------------------------------------- */

static void flock_contender(int out, int in, void *arg)
{
	int fd = open((const char *)arg, O_RDWR);   /* its own open file description */

	if (fd < 0) {
		say(out, "open: %s", strerror(errno));
		return;
	}
	if (flock(fd, LOCK_SH | LOCK_NB) == 0)
		say(out, "a shared lock beside an exclusive one");
	else if (errno == EWOULDBLOCK)
		say(out, "busy");
	else
		say(out, "flock: %s", strerror(errno));
	if (flock(fd, LOCK_EX) < 0) {
		say(out, "flock: %s", strerror(errno));
		return;
	}
	say(out, "locked");
	if (flock(fd, LOCK_SH) == 0)        /* converted: the check may share it */
		say(out, "shared");
	wait_go(in);
	if (flock(fd, LOCK_EX) == 0)        /* waits while the check holds its share */
		say(out, "exclusive");
}

static int check_flock(struct ctx *c)
{
	struct helper h;
	int fd;

	TRY(put(c, "f", "", 0, 0644));
	fd = SYS(open("f", O_RDWR));
	SYS(flock(fd, LOCK_EX));
	TRY(start_helper(c, &h, flock_contender, "f"));
	TRY(want_line(c, &h, "busy"));
	TRY(want_silence(c, &h, 300));      /* waiting for the lock */
	SYS(flock(fd, LOCK_UN));
	TRY(want_line(c, &h, "locked"));
	TRY(want_line(c, &h, "shared"));
	SYS(flock(fd, LOCK_SH | LOCK_NB));  /* its shared lock and ours together */
	TRY(tell_go(c, &h));
	TRY(want_silence(c, &h, 300));      /* its LOCK_EX waits for ours */
	SYS(flock(fd, LOCK_UN));
	TRY(want_line(c, &h, "exclusive"));
	TRY(finish_helper(c, &h));
	SYS(close(fd));
	expect_file(c, "f", 0644, "", 0);
	return CHECK_OK;
}

static struct flock range(short type, off_t start, off_t len)
{
	return (struct flock){ .l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len };
}

static void fcntl_contender(int out, int in, void *arg)
{
	int fd = open((const char *)arg, O_RDWR);
	struct flock l = range(F_WRLCK, 50, 10);

	(void)in;
	if (fd < 0) {
		say(out, "open: %s", strerror(errno));
		return;
	}
	if (fcntl(fd, F_SETLK, &l) == 0)
		say(out, "locked a range another process holds");
	else if (errno == EAGAIN || errno == EACCES)
		say(out, "busy");
	else
		say(out, "F_SETLK: %s", strerror(errno));
	l = range(F_WRLCK, 100, 10);
	if (fcntl(fd, F_SETLK, &l) == 0)
		say(out, "beside");
	else
		say(out, "F_SETLK beside: %s", strerror(errno));
	l = range(F_WRLCK, 0, 10);
	if (fcntl(fd, F_GETLK, &l) < 0)
		say(out, "F_GETLK: %s", strerror(errno));
	else
		say(out, "getlk type %s pid %s start %lld len %lld",
		    l.l_type == F_WRLCK ? "write" : "other",
		    l.l_pid == getppid() ? "holder" : "other", (long long)l.l_start,
		    (long long)l.l_len);
	l = range(F_WRLCK, 0, 10);
	if (fcntl(fd, F_SETLKW, &l) < 0)
		say(out, "F_SETLKW: %s", strerror(errno));
	else
		say(out, "locked");
}

static int check_fcntl_locks(struct ctx *c)
{
	struct flock whole = range(F_UNLCK, 0, 0), held = range(F_WRLCK, 0, 100);
	char *data = pattern(200, 11);
	struct helper h;
	int fd;

	TRY(put(c, "f", data, 200, 0644));
	fd = SYS(open("f", O_RDWR));
	SYS(fcntl(fd, F_SETLK, &held));
	TRY(start_helper(c, &h, fcntl_contender, "f"));
	TRY(want_line(c, &h, "busy"));
	TRY(want_line(c, &h, "beside"));
	TRY(want_line(c, &h, "getlk type write pid holder start 0 len 100"));
	TRY(want_silence(c, &h, 300));      /* F_SETLKW waits */
	SYS(fcntl(fd, F_SETLK, &whole));
	TRY(want_line(c, &h, "locked"));
	TRY(finish_helper(c, &h));
	SYS(close(fd));
	expect_file(c, "f", 0644, data, 200);
	return CHECK_OK;
}

/* Says whether [0, 10) of the file is locked, at each "go", three times. */
static void lock_prober(int out, int in, void *arg)
{
	int fd = open((const char *)arg, O_RDWR);

	for (int i = 0; i < 3; i++) {
		struct flock l = range(F_WRLCK, 0, 10);

		wait_go(in);
		if (fd < 0 || fcntl(fd, F_GETLK, &l) < 0)
			say(out, "open or F_GETLK: %s", strerror(errno));
		else
			say(out, l.l_type == F_UNLCK ? "free" : "held");
	}
}

/* Closing any descriptor of a file drops the process's record locks on it:
 * a dup()ed one, or another open of the same file (generic/478). */
static int check_lock_dup_close(struct ctx *c)
{
	struct flock held = range(F_WRLCK, 0, 100);
	struct helper h;
	int fd, other;

	TRY(put(c, "f", "lock", 4, 0644));
	fd = SYS(open("f", O_RDWR));
	TRY(start_helper(c, &h, lock_prober, "f"));
	SYS(fcntl(fd, F_SETLK, &held));
	TRY(tell_go(c, &h));
	TRY(want_line(c, &h, "held"));
	other = SYS(dup(fd));
	SYS(close(other));
	TRY(tell_go(c, &h));
	TRY(want_line(c, &h, "free"));
	SYS(fcntl(fd, F_SETLK, &held));
	other = SYS(open("f", O_RDONLY));
	SYS(close(other));
	TRY(tell_go(c, &h));
	TRY(want_line(c, &h, "free"));
	TRY(finish_helper(c, &h));
	SYS(close(fd));
	expect_file(c, "f", 0644, "lock", 4);
	return CHECK_OK;
}

/* ---- fifo --------------------------------------------------------------- */

#define FIFO_BYTES (200 * 1024)      /* more than a pipe buffer: both sides run */

static void fifo_writer(int out, int in, void *arg)
{
	char *data = pattern(FIFO_BYTES, 12);
	int fd = open((const char *)arg, O_WRONLY);
	size_t done = 0;

	(void)in;
	while (fd >= 0 && done < FIFO_BYTES) {
		ssize_t n = write(fd, data + done, FIFO_BYTES - done);
		if (n <= 0)
			break;
		done += (size_t)n;
	}
	if (fd >= 0)
		close(fd);              /* the reader's end of file */
	if (done == FIFO_BYTES)
		say(out, "written");
	else
		say(out, "open or write: %s", strerror(errno));
}

static int check_fifo(struct ctx *c)
{
	char *want = pattern(FIFO_BYTES, 12), *got = malloc(FIFO_BYTES + 1);
	size_t have = 0;
	struct helper h;
	struct stat st;
	ssize_t n;
	int fd;

	SYS(mkfifo("pipe", 0644));
	SYS(mknod("pipe2", S_IFIFO | 0600, 0));
	SYS(stat("pipe2", &st));
	REQUIRE(S_ISFIFO(st.st_mode) && (st.st_mode & 07777) == 0600, "pipe2: mode %o", st.st_mode);
	TRY(start_helper(c, &h, fifo_writer, "pipe"));
	fd = SYS(open("pipe", O_RDONLY));   /* meets the writer in the guest kernel */
	while ((n = read(fd, got + have, FIFO_BYTES + 1 - have)) > 0)
		have += (size_t)n;
	SYS(n);
	SYS(close(fd));
	TRY(want_line(c, &h, "written"));
	TRY(finish_helper(c, &h));
	REQUIRE(have == FIFO_BYTES && !memcmp(got, want, FIFO_BYTES),
		"read %zu bytes through the FIFO, not the %d written", have, FIFO_BYTES);
	/* Nothing of the traffic lands in the host node. */
	expect(c, "pipe", "type=fifo mode=0644 size=0");
	expect(c, "pipe2", "type=fifo mode=0600");
	return CHECK_OK;
}

const struct check proc_checks[] = {
	{ "perms", "perms_denied", check_perms_denied },
	{ "perms", "perms_owner", check_perms_owner },
	{ "perms", "perms_attrs", check_perms_attrs },
	{ "perms", "setid_write", check_setid_write },
	{ "perms", "exec_only", check_exec_only },
	{ "perms", "sticky_dir", check_sticky_dir },
	{ "perms", "group_perms", check_group_perms },
	{ "groups", "chown_supp_group", check_chown_supp_group },
	{ "groups", "setgid_dir_supp_member", check_setgid_dir_supp_member },
	{ "locks", "flock", check_flock },
	{ "locks", "fcntl_locks", check_fcntl_locks },
	{ "locks", "lock_dup_close", check_lock_dup_close },
	{ "fifo", "fifo", check_fifo },
	{ NULL, NULL, NULL }
};
