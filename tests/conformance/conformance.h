/*
 * conformance.h - the POSIX conformance checks of fsbridge, shared parts.
 *
 * fsb-conformance runs a list of checks against a directory on a mount
 * (a virtio-fs mount in a QEMU guest, an fsbridge-mount over a stream, or
 * any other filesystem).  Each check runs in a child process of its own,
 * inside a fresh subdirectory named after the check, and either passes,
 * fails with a one-line reason, or is skipped with one.  A check that
 * passes also states what the host directory must now hold ("expect"
 * lines: the manifest); the test harness compares that with the export on
 * the host, so every result is verified on both sides.
 *
 * Writing a check: a function `int check_NAME(struct ctx *c)` that runs in
 * its own directory (the current directory) and returns through the
 * macros below; add it to the table of its group's file.
 */
#ifndef FSB_CONFORMANCE_H
#define FSB_CONFORMANCE_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

enum { CHECK_OK = 0, CHECK_FAIL = 1, CHECK_SKIP = 2 };

#define KiB 1024L
#define MiB (1024L * KiB)
#define GiB (1024L * MiB)

struct ctx {
	const char *name;      /* the check, and its directory below the top */
	bool root;             /* running as uid 0 (chown, other users) */
	uid_t uid;             /* the unprivileged user of the perms checks */
	gid_t gid;
	char why[1024];        /* the reason of a failure or a skip */
};

struct check {
	const char *group;
	const char *name;
	int (*run)(struct ctx *c);
};

/* One table per group file, ended by a NULL name. */
extern const struct check file_checks[];
extern const struct check dir_checks[];
extern const struct check attr_checks[];
extern const struct check proc_checks[];

/* ---- results ------------------------------------------------------------ */

int fail_at(struct ctx *c, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int skip_because(struct ctx *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define FAIL(...) return fail_at(c, __LINE__, __VA_ARGS__)
#define SKIP(...) return skip_because(c, __VA_ARGS__)
#define REQUIRE(cond, ...) do { if (!(cond)) FAIL(__VA_ARGS__); } while (0)
/* Propagates a helper's failure (or skip). */
#define TRY(expr) do { int try_rc_ = (expr); if (try_rc_) return try_rc_; } while (0)
/* A call that must succeed; its value (an fd, a count). */
#define SYS(call) ({ \
	long sys_rc_ = (long)(call); \
	if (sys_rc_ < 0) \
		FAIL("%s: %s", #call, strerror(errno)); \
	sys_rc_; })
/* A call that must fail with errno `want` (or `alt`, for a second value
 * POSIX allows). */
#define FAILS_WITH2(call, want, alt) do { \
	errno = 0; \
	long fw_rc_ = (long)(call); \
	int fw_err_ = errno; \
	if (fw_rc_ >= 0) \
		FAIL("%s succeeded, expected %s", #call, strerrorname_np(want)); \
	if (fw_err_ != (want) && fw_err_ != (alt)) \
		FAIL("%s: %s, expected %s", #call, errname(fw_err_), strerrorname_np(want)); \
} while (0)
#define FAILS_WITH(call, want) FAILS_WITH2(call, want, want)

const char *errname(int err);

/* ---- the manifest ---------------------------------------------------------
 * "expect PATH key=value ..." with PATH relative to the top directory (the
 * check's directory is prepended).  Keys (all optional, the harness checks
 * what is given):
 *   type=reg|dir|lnk|fifo|none   none: the path must not exist
 *   mode=0644 (permission bits, octal)   uid= gid=   nlink=
 *   size=  crc32= (of the whole content)  alloc_min= alloc_max= (st_blocks*512)
 *   at=OFFSET:HEX (bytes at an offset)   target= (symlink)
 *   mtime=NS atime=NS (nanoseconds since the epoch)
 *   entries=N (directory entries besides . and ..)
 *   inode_of=PATH (the same inode as PATH)
 *   xattr.NAME=HEX   xattrs=NAME,NAME (the exact set of user.* names)
 *   fs_bytes= fs_files= (statfs of the filesystem, within a tolerance)
 * Strings (paths, targets, names) are percent-encoded.
 */
void expect(struct ctx *c, const char *rel, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* A regular file of the caller's uid/gid with this mode and content. */
void expect_file(struct ctx *c, const char *rel, mode_t mode, const void *data, size_t len);
void expect_absent(struct ctx *c, const char *rel);
void expect_symlink(struct ctx *c, const char *rel, const char *target);
/* `s` percent-encoded, in a static buffer (one of 4 rotating ones). */
const char *enc(const char *s);
const char *hex(const void *data, size_t len);

/* ---- helpers ------------------------------------------------------------ */

uint32_t crc32_of(const void *data, size_t len);
/* Deterministic bytes: no two 4 KiB pages of one seed alike. */
void *pattern(size_t len, unsigned seed);
/* Whole-file write (O_CREAT|O_TRUNC) and compare. */
int put(struct ctx *c, const char *path, const void *data, size_t len, mode_t mode);
int same_content(struct ctx *c, const char *path, const void *want, size_t len);
/* An empty file (O_CREAT|O_EXCL): creating must not find one. */
int touch(struct ctx *c, const char *path, mode_t mode);
/* Runs fn(arg) in a child process as uid/gid (no supplementary groups)
 * with the given umask; a failure's reason comes back into c->why. */
int as_user(struct ctx *c, uid_t uid, gid_t gid, mode_t umask_value,
	    int (*fn)(struct ctx *c, void *arg), void *arg);
/* The same with the supplementary groups groups[0..n). */
int as_user_in(struct ctx *c, uid_t uid, gid_t gid, const gid_t *groups, size_t n,
	       mode_t umask_value, int (*fn)(struct ctx *c, void *arg), void *arg);
long long ns_of(const struct timespec *ts);

#endif
