/*
 * checks_attrs.c - attributes: modes, owners, timestamps, extended
 * attributes, default ACLs, statfs (groups attrs, owner, xattr, acl, statfs).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "conformance.h"

static int require_mode(struct ctx *c, const char *path, mode_t want)
{
	struct stat st;

	SYS(lstat(path, &st));
	REQUIRE((st.st_mode & 07777) == want, "%s: mode %04o, expected %04o", path,
		st.st_mode & 07777, want);
	return CHECK_OK;
}

static int require_owner(struct ctx *c, const char *path, uid_t uid, gid_t gid)
{
	struct stat st;

	SYS(lstat(path, &st));
	REQUIRE(st.st_uid == uid && st.st_gid == gid, "%s: owner %u:%u, expected %u:%u", path,
		st.st_uid, st.st_gid, uid, gid);
	return CHECK_OK;
}

static struct timespec ts_of(long long ns)
{
	long long sec = ns / 1000000000LL, nsec = ns % 1000000000LL;

	if (nsec < 0)                     /* before 1970: tv_nsec stays positive */
		sec--, nsec += 1000000000LL;
	return (struct timespec){ .tv_sec = sec, .tv_nsec = nsec };
}

static int set_times(struct ctx *c, const char *path, long long atime, long long mtime, int flags)
{
	struct timespec t[2] = { ts_of(atime), ts_of(mtime) };

	SYS(utimensat(AT_FDCWD, path, t, flags));
	return CHECK_OK;
}

static int require_times(struct ctx *c, const char *path, long long atime, long long mtime)
{
	struct stat st;

	SYS(lstat(path, &st));
	REQUIRE(ns_of(&st.st_atim) == atime && ns_of(&st.st_mtim) == mtime,
		"%s: atime %lld mtime %lld, expected %lld %lld", path, ns_of(&st.st_atim),
		ns_of(&st.st_mtim), atime, mtime);
	return CHECK_OK;
}

/* ---- attrs -------------------------------------------------------------- */

static int check_chmod(struct ctx *c)
{
	const mode_t modes[] = { 0640, 0000, 0777, 04755, 02711, 0444 };
	int fd;

	TRY(put(c, "f", "x", 1, 0644));
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		if ((modes[i] & S_ISGID) && !c->root)
			continue;           /* setgid needs the file's group */
		SYS(chmod("f", modes[i]));
		TRY(require_mode(c, "f", modes[i]));
	}
	fd = SYS(open("f", O_RDONLY));
	SYS(fchmod(fd, 0600));
	SYS(close(fd));
	TRY(require_mode(c, "f", 0600));
	expect_file(c, "f", 0600, "x", 1);
	return CHECK_OK;
}

static int check_chmod_dir_bits(struct ctx *c)
{
	SYS(mkdir("sg", 0755));
	SYS(chmod("sg", 02755));
	TRY(require_mode(c, "sg", 02755));
	SYS(mkdir("tmp", 0755));
	SYS(chmod("tmp", 01777));
	TRY(require_mode(c, "tmp", 01777));
	expect(c, "sg", "type=dir mode=2755");
	expect(c, "tmp", "type=dir mode=1777");
	return CHECK_OK;
}

static int check_utimens(struct ctx *c)
{
	const long long atime = 1234567890123456789LL, mtime = 1111111111222333444LL;
	const long long datime = -1000000001LL, dmtime = 2000000000000000007LL;

	TRY(put(c, "f", "x", 1, 0644));
	TRY(set_times(c, "f", atime, mtime, 0));
	TRY(require_times(c, "f", atime, mtime));
	/* Directories, and before 1970. */
	SYS(mkdir("d", 0755));
	TRY(set_times(c, "d", datime, dmtime, 0));
	TRY(require_times(c, "d", datime, dmtime));
	/* A symlink's own times, its target's unchanged. */
	SYS(symlink("f", "l"));
	TRY(set_times(c, "l", 5000000001LL, 6000000002LL, AT_SYMLINK_NOFOLLOW));
	TRY(require_times(c, "l", 5000000001LL, 6000000002LL));
	TRY(require_times(c, "f", atime, mtime));
	expect(c, "f", "type=reg atime=%lld mtime=%lld", atime, mtime);
	expect(c, "d", "type=dir atime=%lld mtime=%lld", datime, dmtime);
	expect(c, "l", "type=lnk atime=5000000001 mtime=6000000002");
	return CHECK_OK;
}

static int check_utime_omit_now(struct ctx *c)
{
	/* The host sets UTIME_NOW from its clock; a guest clock may differ by
	 * a few seconds from the host's. */
	const long long slack = 30 * 1000000000LL;
	struct timespec t[2] = { { .tv_nsec = UTIME_OMIT }, { 1500000000, 999999999 } };
	struct timespec before, after;
	struct stat st;

	TRY(put(c, "f", "x", 1, 0644));
	TRY(set_times(c, "f", 1000000000000000001LL, 1000000000000000002LL, 0));
	SYS(utimensat(AT_FDCWD, "f", t, 0));     /* only mtime */
	TRY(require_times(c, "f", 1000000000000000001LL, 1500000000999999999LL));
	TRY(put(c, "g", "x", 1, 0644));
	TRY(set_times(c, "g", 0, 0, 0));
	t[0].tv_nsec = t[1].tv_nsec = UTIME_NOW;
	clock_gettime(CLOCK_REALTIME, &before);
	SYS(utimensat(AT_FDCWD, "g", t, 0));
	clock_gettime(CLOCK_REALTIME, &after);
	SYS(stat("g", &st));
	REQUIRE(ns_of(&st.st_mtim) >= ns_of(&before) - slack &&
		ns_of(&st.st_mtim) <= ns_of(&after) + slack &&
		ns_of(&st.st_atim) >= ns_of(&before) - slack,
		"UTIME_NOW gave mtime %lld atime %lld, now is %lld", ns_of(&st.st_mtim),
		ns_of(&st.st_atim), ns_of(&before));
	/* utimes(path, NULL), as touch does. */
	TRY(set_times(c, "g", 0, 0, 0));
	SYS(utimensat(AT_FDCWD, "g", NULL, 0));
	SYS(stat("g", &st));
	REQUIRE(ns_of(&st.st_mtim) >= ns_of(&before) - slack, "utimensat(NULL): mtime %lld",
		ns_of(&st.st_mtim));
	expect(c, "f", "type=reg atime=1000000000000000001 mtime=1500000000999999999");
	return CHECK_OK;
}

static int check_write_updates_mtime(struct ctx *c)
{
	const long long old = 1000000000000000000LL;
	struct stat st;
	int fd;

	TRY(put(c, "f", "x", 1, 0644));
	TRY(set_times(c, "f", old, old, 0));
	fd = SYS(open("f", O_WRONLY | O_APPEND));
	SYS(write(fd, "more", 4));
	SYS(fsync(fd));
	SYS(fstat(fd, &st));
	SYS(close(fd));
	REQUIRE(ns_of(&st.st_mtim) > old + old / 10, "a write left mtime at %lld",
		ns_of(&st.st_mtim));
	expect_file(c, "f", 0644, "xmore", 5);
	return CHECK_OK;
}

/* ---- owner (root) ------------------------------------------------------- */

static int check_chown(struct ctx *c)
{
	if (!c->root)
		SKIP("chown to other users needs root");
	TRY(put(c, "f", "x", 1, 0644));
	SYS(chown("f", 1000, 1000));
	TRY(require_owner(c, "f", 1000, 1000));
	SYS(chown("f", (uid_t)-1, 2000));       /* the group only */
	TRY(require_owner(c, "f", 1000, 2000));
	SYS(symlink("f", "l"));
	SYS(lchown("l", 3000, 3000));           /* the link, not its target */
	TRY(require_owner(c, "l", 3000, 3000));
	TRY(require_owner(c, "f", 1000, 2000));
	SYS(mkdir("d", 0755));
	SYS(chown("d", 1000, 1000));
	TRY(require_owner(c, "d", 1000, 1000));
	expect(c, "f", "type=reg uid=1000 gid=2000");
	expect(c, "l", "type=lnk uid=3000 gid=3000");
	expect(c, "d", "type=dir uid=1000 gid=1000");
	return CHECK_OK;
}

/* Linux clears S_ISUID/S_ISGID of an executable whose owner changes, even
 * when root changes it. */
static int check_chown_clears_setuid(struct ctx *c)
{
	if (!c->root)
		SKIP("chown to other users needs root");
	TRY(put(c, "prog", "#!/bin/sh\n", 10, 0755));
	SYS(chmod("prog", 06755));
	SYS(chown("prog", 1000, 1000));
	TRY(require_mode(c, "prog", 0755));
	expect(c, "prog", "type=reg mode=0755 uid=1000 gid=1000");
	return CHECK_OK;
}

/* Files made in a setgid directory take its group; subdirectories also
 * inherit the bit. */
static int check_setgid_inherit(struct ctx *c)
{
	struct stat st;

	if (!c->root)
		SKIP("chown to another group needs root");
	SYS(mkdir("team", 0755));
	SYS(chown("team", 0, 1234));
	SYS(chmod("team", 02775));
	TRY(put(c, "team/file", "", 0, 0644));
	SYS(mkdir("team/sub", 0755));
	TRY(require_owner(c, "team/file", 0, 1234));
	TRY(require_owner(c, "team/sub", 0, 1234));
	SYS(stat("team/sub", &st));
	REQUIRE(st.st_mode & S_ISGID, "team/sub did not inherit the setgid bit");
	expect(c, "team/file", "type=reg mode=0644 uid=0 gid=1234");
	expect(c, "team/sub", "type=dir mode=2755 uid=0 gid=1234");
	return CHECK_OK;
}

/* ---- xattr -------------------------------------------------------------- */

/* The user.* names of `path`, sorted, comma separated, into buf. */
static int user_xattrs(struct ctx *c, const char *path, char *buf, size_t size)
{
	char list[4096], *names[64];
	ssize_t len = SYS(listxattr(path, list, sizeof(list)));
	int n = 0;

	for (char *p = list; p < list + len && n < 64; p += strlen(p) + 1)
		if (!strncmp(p, "user.", 5))
			names[n++] = p;
	for (int i = 1; i < n; i++)         /* a handful: insertion sort */
		for (int k = i; k > 0 && strcmp(names[k - 1], names[k]) > 0; k--) {
			char *t = names[k];
			names[k] = names[k - 1], names[k - 1] = t;
		}
	buf[0] = 0;
	for (int i = 0; i < n; i++)
		snprintf(buf + strlen(buf), size - strlen(buf), "%s%s", i ? "," : "", names[i]);
	return CHECK_OK;
}

static int require_xattr(struct ctx *c, const char *path, const char *name, const void *want,
			 size_t len)
{
	static char got[8192];
	ssize_t n = SYS(getxattr(path, name, got, sizeof(got)));

	REQUIRE((size_t)n == len && !memcmp(got, want, len), "%s: %s has %zd bytes, not the %zu set",
		path, name, n, len);
	return CHECK_OK;
}

/* The first setxattr of a check: EOPNOTSUPP means no xattrs here (skip). */
static int first_xattr(struct ctx *c, const char *path, const char *name, const void *value,
		       size_t len)
{
	if (setxattr(path, name, value, len, 0) == 0)
		return CHECK_OK;
	if (errno == EOPNOTSUPP)
		SKIP("user xattrs: EOPNOTSUPP (the export or its filesystem has none)");
	FAIL("setxattr %s %s: %s", path, name, strerror(errno));
}

static int check_xattrs(struct ctx *c)
{
	static unsigned char big[3072];     /* binary; ext4 fits 4 KiB per inode */
	char names[256];

	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (unsigned char)i;
	TRY(put(c, "f", "x", 1, 0644));
	TRY(first_xattr(c, "f", "user.test", "value", 5));
	TRY(require_xattr(c, "f", "user.test", "value", 5));
	SYS(setxattr("f", "user.empty", "", 0, 0));
	SYS(setxattr("f", "user.big", big, sizeof(big), 0));
	TRY(require_xattr(c, "f", "user.empty", "", 0));
	TRY(require_xattr(c, "f", "user.big", big, sizeof(big)));
	TRY(user_xattrs(c, "f", names, sizeof(names)));
	REQUIRE(!strcmp(names, "user.big,user.empty,user.test"), "listxattr: %s", names);
	/* Flags: CREATE must not replace, REPLACE needs an existing one. */
	FAILS_WITH(setxattr("f", "user.test", "other", 5, XATTR_CREATE), EEXIST);
	FAILS_WITH(setxattr("f", "user.missing", "v", 1, XATTR_REPLACE), ENODATA);
	SYS(setxattr("f", "user.test", "replaced", 8, XATTR_REPLACE));
	SYS(removexattr("f", "user.empty"));
	FAILS_WITH(getxattr("f", "user.empty", names, sizeof(names)), ENODATA);
	FAILS_WITH(removexattr("f", "user.empty"), ENODATA);
	TRY(user_xattrs(c, "f", names, sizeof(names)));
	REQUIRE(!strcmp(names, "user.big,user.test"), "listxattr after removing: %s", names);
	SYS(mkdir("d", 0755));
	SYS(setxattr("d", "user.dir", "d", 1, 0));
	TRY(require_xattr(c, "d", "user.dir", "d", 1));
	expect(c, "f", "xattrs=user.big,user.test xattr.user.test=%s", hex("replaced", 8));
	expect(c, "f", "xattr.user.big=%s", hex(big, sizeof(big)));
	expect(c, "d", "xattrs=user.dir xattr.user.dir=%s", hex("d", 1));
	return CHECK_OK;
}

static int check_xattr_erange(struct ctx *c)
{
	char value[100], buf[10];

	memset(value, 'v', sizeof(value));
	TRY(put(c, "f", "x", 1, 0644));
	TRY(first_xattr(c, "f", "user.v", value, sizeof(value)));
	REQUIRE(SYS(getxattr("f", "user.v", NULL, 0)) == sizeof(value),
		"getxattr with size 0 does not give the length");
	FAILS_WITH(getxattr("f", "user.v", buf, sizeof(buf)), ERANGE);
	REQUIRE(SYS(listxattr("f", NULL, 0)) >= 7, "listxattr with size 0: too small");
	FAILS_WITH(listxattr("f", buf, 3), ERANGE);
	expect(c, "f", "xattrs=user.v xattr.user.v=%s", hex(value, sizeof(value)));
	return CHECK_OK;
}

/*
 * trusted.* and security.* as root (overlayfs and setcap in a guest).  On
 * fsbridge they need the export option xattr=map (fsbridged(8)), which
 * keeps them on the host as user.fsbridge.*, and refuses that raw name to
 * the guest (EPERM; a local disk: ENODATA); without it they are refused
 * (EPERM): skipped.
 */
static int check_trusted_xattrs(struct ctx *c)
{
	char list[4096], buf[8];
	bool trusted = false, security = false;

	if (!c->root)
		SKIP("trusted.* xattrs need root");
	TRY(put(c, "f", "x", 1, 0644));
	if (setxattr("f", "trusted.fsb", "t", 1, 0) < 0) {
		if (errno == EPERM || errno == EOPNOTSUPP)
			SKIP("trusted.* xattrs: %s (fsbridge: an export without xattr=map)",
			     strerrorname_np(errno));
		FAIL("setxattr f trusted.fsb: %s", strerror(errno));
	}
	SYS(setxattr("f", "security.fsb", "s", 1, 0));
	TRY(require_xattr(c, "f", "trusted.fsb", "t", 1));
	TRY(require_xattr(c, "f", "security.fsb", "s", 1));
	ssize_t len = SYS(listxattr("f", list, sizeof(list)));
	for (char *p = list; p < list + len; p += strlen(p) + 1) {
		trusted |= !strcmp(p, "trusted.fsb");
		security |= !strcmp(p, "security.fsb");
		REQUIRE(strncmp(p, "user.fsbridge.", 14), "listxattr shows %s", p);
	}
	REQUIRE(trusted && security, "listxattr misses trusted.fsb or security.fsb");
	REQUIRE(SYS(listxattr("f", NULL, 0)) == len, "listxattr with size 0: not the list's size");
	SYS(removexattr("f", "security.fsb"));
	FAILS_WITH(getxattr("f", "security.fsb", buf, sizeof(buf)), ENODATA);
	if (getxattr("f", "user.fsbridge.trusted.fsb", buf, sizeof(buf)) < 0 && errno == EPERM) {
		expect(c, "f", "xattrs=user.fsbridge.trusted.fsb xattr.user.fsbridge.trusted.fsb=%s",
		       hex("t", 1));
		return CHECK_OK;
	}
	expect(c, "f", "xattrs= xattr.trusted.fsb=%s", hex("t", 1)); /* a local disk */
	return CHECK_OK;
}

/* ---- statfs ------------------------------------------------------------- */

/* ---- acl ---------------------------------------------------------------- */

/* A default ACL on the parent replaces the umask (generic/099, 319, 444):
 * u::rwx g::rwx o::r-x gives group::rwx to a file made with 0666 under
 * umask 022, and a new directory inherits the default ACL itself. */
static int check_default_acl(struct ctx *c)
{
	static const unsigned char acl[] = {
		2, 0, 0, 0,                                 /* POSIX_ACL_XATTR_VERSION */
		0x01, 0, 7, 0, 0xff, 0xff, 0xff, 0xff,      /* ACL_USER_OBJ rwx */
		0x04, 0, 7, 0, 0xff, 0xff, 0xff, 0xff,      /* ACL_GROUP_OBJ rwx */
		0x20, 0, 5, 0, 0xff, 0xff, 0xff, 0xff,      /* ACL_OTHER r-x */
	};
	unsigned char got[sizeof(acl) + 64];
	ssize_t n;
	int fd;

	SYS(mkdir("shared", 0755));
	if (setxattr("shared", "system.posix_acl_default", acl, sizeof(acl), 0) < 0) {
		if (errno == EOPNOTSUPP)
			SKIP("no POSIX ACLs here: %s", strerror(errno));
		FAIL("setxattr(system.posix_acl_default): %s", strerror(errno));
	}
	umask(022);
	fd = SYS(open("shared/file", O_WRONLY | O_CREAT | O_EXCL, 0666));
	SYS(close(fd));
	SYS(mkdir("shared/dir", 0777));
	TRY(require_mode(c, "shared/file", 0664));
	TRY(require_mode(c, "shared/dir", 0775));
	n = SYS(getxattr("shared/dir", "system.posix_acl_default", got, sizeof(got)));
	REQUIRE(n == (ssize_t)sizeof(acl) && !memcmp(got, acl, sizeof(acl)),
		"shared/dir did not inherit the default ACL (%zd bytes)", n);
	expect(c, "shared/file", "type=reg mode=0664");
	expect(c, "shared/dir", "type=dir mode=0775");
	return CHECK_OK;
}

static int check_statfs(struct ctx *c)
{
	struct statvfs sv;

	SYS(statvfs(".", &sv));
	REQUIRE(sv.f_bsize > 0 && sv.f_frsize > 0, "block sizes %lu/%lu", sv.f_bsize, sv.f_frsize);
	REQUIRE(sv.f_namemax == 255, "f_namemax %lu", sv.f_namemax);
	REQUIRE(sv.f_bavail <= sv.f_bfree && sv.f_bfree <= sv.f_blocks,
		"blocks: avail %llu free %llu total %llu", (unsigned long long)sv.f_bavail,
		(unsigned long long)sv.f_bfree, (unsigned long long)sv.f_blocks);
	REQUIRE(sv.f_ffree <= sv.f_files, "inodes: free %llu total %llu",
		(unsigned long long)sv.f_ffree, (unsigned long long)sv.f_files);
	expect(c, ".", "type=dir fs_bytes=%llu fs_files=%llu",
	       (unsigned long long)sv.f_blocks * sv.f_frsize, (unsigned long long)sv.f_files);
	return CHECK_OK;
}

const struct check attr_checks[] = {
	{ "attrs", "chmod", check_chmod },
	{ "attrs", "chmod_dir_bits", check_chmod_dir_bits },
	{ "attrs", "utimens", check_utimens },
	{ "attrs", "utime_omit_now", check_utime_omit_now },
	{ "attrs", "write_updates_mtime", check_write_updates_mtime },
	{ "owner", "chown", check_chown },
	{ "owner", "chown_clears_setuid", check_chown_clears_setuid },
	{ "owner", "setgid_inherit", check_setgid_inherit },
	{ "xattr", "xattrs", check_xattrs },
	{ "xattr", "xattr_erange", check_xattr_erange },
	{ "xattr", "trusted_xattrs", check_trusted_xattrs },
	{ "acl", "default_acl", check_default_acl },
	{ "statfs", "statfs", check_statfs },
	{ NULL, NULL, NULL }
};
