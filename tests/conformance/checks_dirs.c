/*
 * checks_dirs.c - names: hard and symbolic links, renames, directories,
 * listings (groups links, rename, dirs, readdir).
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conformance.h"

/* The number of entries of directory `path` besides . and .. */
static int count_entries(struct ctx *c, const char *path, long *count)
{
	DIR *d = opendir(path);
	struct dirent *e;

	*count = 0;
	if (!d)
		FAIL("opendir %s: %s", path, strerror(errno));
	*count = 0;
	errno = 0;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			(*count)++;
	if (errno)
		FAIL("readdir %s: %s", path, strerror(errno));
	closedir(d);
	return CHECK_OK;
}

static int require_entries(struct ctx *c, const char *path, long want)
{
	long n;

	TRY(count_entries(c, path, &n));
	REQUIRE(n == want, "%s has %ld entries, expected %ld", path, n, want);
	return CHECK_OK;
}

static int require_nlink(struct ctx *c, const char *path, nlink_t want)
{
	struct stat st;

	SYS(lstat(path, &st));
	REQUIRE(st.st_nlink == want, "%s: nlink %lu, expected %lu", path,
		(unsigned long)st.st_nlink, (unsigned long)want);
	return CHECK_OK;
}

static ino_t inode_of(const char *path)
{
	struct stat st;

	return lstat(path, &st) < 0 ? 0 : st.st_ino;
}

/* ---- links -------------------------------------------------------------- */

static int check_hard_links(struct ctx *c)
{
	int fd;

	TRY(put(c, "a", "shared", 6, 0644));
	SYS(mkdir("sub", 0755));
	SYS(link("a", "sub/b"));
	REQUIRE(inode_of("a") == inode_of("sub/b"), "two names, two inodes");
	TRY(require_nlink(c, "a", 2));
	TRY(require_nlink(c, "sub/b", 2));
	/* A write through one name is seen through the other. */
	fd = SYS(open("sub/b", O_WRONLY | O_APPEND));
	SYS(write(fd, "+appended", 9));
	SYS(close(fd));
	TRY(same_content(c, "a", "shared+appended", 15));
	FAILS_WITH(link("sub", "sublink"), EPERM);
	FAILS_WITH(link("a", "sub/b"), EEXIST);
	SYS(unlink("a"));
	TRY(require_nlink(c, "sub/b", 1));
	TRY(same_content(c, "sub/b", "shared+appended", 15));
	expect_file(c, "sub/b", 0644, "shared+appended", 15);
	expect(c, "sub/b", "nlink=1");
	expect_absent(c, "a");
	expect_absent(c, "sublink");
	return CHECK_OK;
}

static int check_many_links(struct ctx *c)
{
	char name[16];

	TRY(put(c, "orig", "x", 1, 0644));
	for (int i = 0; i < 20; i++) {
		snprintf(name, sizeof(name), "l%d", i);
		SYS(link("orig", name));
	}
	for (int i = 0; i < 20; i++) {
		snprintf(name, sizeof(name), "l%d", i);
		REQUIRE(inode_of(name) == inode_of("orig"), "%s is another inode", name);
	}
	TRY(require_nlink(c, "l7", 21));
	for (int i = 0; i < 10; i++) {
		snprintf(name, sizeof(name), "l%d", i);
		SYS(unlink(name));
	}
	TRY(require_nlink(c, "orig", 11));
	expect_file(c, "orig", 0644, "x", 1);
	expect(c, "orig", "nlink=11");
	for (int i = 10; i < 20; i++) {
		snprintf(name, sizeof(name), "l%d", i);
		expect(c, name, "type=reg nlink=11 inode_of=%s/orig", enc(c->name));
	}
	expect(c, ".", "type=dir entries=11");
	return CHECK_OK;
}

static int check_symlinks(struct ctx *c)
{
	static char long_target[1000];
	const char *links[][2] = {
		{ "reldir", "dir" }, { "dir/up", "../target.txt" }, { "rel", "target.txt" },
		{ "abs", "/etc/passwd" }, { "dangling", "does/not/exist" }, { "long", long_target },
	};
	char buf[2048];
	struct stat st;
	int fd;

	strcpy(long_target, "component");   /* 100 components: 999 bytes */
	for (int i = 1; i < 100; i++)
		strcat(long_target, "/component");
	TRY(put(c, "target.txt", "through the link", 16, 0644));
	SYS(mkdir("dir", 0755));
	TRY(put(c, "dir/inner", "inner", 5, 0644));
	for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++)
		SYS(symlink(links[i][1], links[i][0]));
	for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++) {
		ssize_t n = SYS(readlink(links[i][0], buf, sizeof(buf)));
		REQUIRE((size_t)n == strlen(links[i][1]) && !memcmp(buf, links[i][1], (size_t)n),
			"readlink %s: %.*s", links[i][0], (int)n, buf);
		SYS(lstat(links[i][0], &st));
		REQUIRE(S_ISLNK(st.st_mode), "%s: not a symlink", links[i][0]);
		REQUIRE(st.st_size == n, "%s: lstat size %lld", links[i][0], (long long)st.st_size);
	}
	/* The guest resolves links itself. */
	TRY(same_content(c, "rel", "through the link", 16));
	TRY(same_content(c, "dir/up", "through the link", 16));
	TRY(require_entries(c, "reldir", 2));
	TRY(same_content(c, "reldir/inner", "inner", 5));
	FAILS_WITH(open("dangling", O_RDONLY), ENOENT);
	fd = SYS(open("rel", O_WRONLY | O_APPEND));       /* writes the target */
	SYS(write(fd, "!", 1));
	SYS(close(fd));
	FAILS_WITH(readlink("target.txt", buf, sizeof(buf)), EINVAL);
	SYS(unlink("rel"));                 /* leaves the target */
	TRY(same_content(c, "target.txt", "through the link!", 17));
	expect_file(c, "target.txt", 0644, "through the link!", 17);
	expect_absent(c, "rel");
	for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++)
		if (strcmp(links[i][0], "rel"))
			expect_symlink(c, links[i][0], links[i][1]);
	return CHECK_OK;
}

static int check_symlink_hardlink(struct ctx *c)
{
	char buf[64];

	SYS(symlink("target", "s"));
	SYS(rename("s", "s2"));
	REQUIRE(SYS(readlink("s2", buf, sizeof(buf))) == 6 && !memcmp(buf, "target", 6),
		"readlink after rename");
	/* link(2) does not follow symlinks: a second name of the link itself. */
	SYS(linkat(AT_FDCWD, "s2", AT_FDCWD, "s3", 0));
	REQUIRE(SYS(readlink("s3", buf, sizeof(buf))) == 6, "readlink of the hard link");
	REQUIRE(inode_of("s3") == inode_of("s2"), "the hard link is another inode");
	TRY(require_nlink(c, "s3", 2));
	expect_absent(c, "s");
	expect_symlink(c, "s2", "target");
	expect(c, "s3", "type=lnk target=target nlink=2 inode_of=%s/s2", enc(c->name));
	return CHECK_OK;
}

/* ---- rename ------------------------------------------------------------- */

static int check_rename_file(struct ctx *c)
{
	ino_t ino;

	TRY(put(c, "a", "AAA", 3, 0644));
	TRY(put(c, "b", "BBBBBB", 6, 0644));
	ino = inode_of("a");
	SYS(rename("a", "b"));
	REQUIRE(inode_of("a") == 0, "a still exists");
	REQUIRE(inode_of("b") == ino, "b is not the renamed inode");
	TRY(same_content(c, "b", "AAA", 3));
	TRY(require_entries(c, ".", 1));
	expect_absent(c, "a");
	expect_file(c, "b", 0644, "AAA", 3);
	expect(c, ".", "type=dir entries=1");
	return CHECK_OK;
}

static int check_rename_open(struct ctx *c)
{
	int fd;

	TRY(put(c, "old", "content", 7, 0644));
	fd = SYS(open("old", O_RDWR));
	SYS(rename("old", "new"));
	SYS(lseek(fd, 0, SEEK_END));
	SYS(write(fd, "+more", 5));
	SYS(close(fd));
	TRY(same_content(c, "new", "content+more", 12));
	expect_absent(c, "old");
	expect_file(c, "new", 0644, "content+more", 12);
	return CHECK_OK;
}

static int check_rename_dirs(struct ctx *c)
{
	SYS(mkdir("src", 0755));
	TRY(put(c, "src/inside", "i", 1, 0644));
	SYS(mkdir("empty", 0755));
	SYS(mkdir("full", 0755));
	TRY(put(c, "full/x", "x", 1, 0644));
	TRY(put(c, "plain", "p", 1, 0644));
	FAILS_WITH2(rename("src", "full"), ENOTEMPTY, EEXIST);
	FAILS_WITH(rename("src", "plain"), ENOTDIR);
	FAILS_WITH(rename("plain", "empty"), EISDIR);
	FAILS_WITH(rename("src", "src/sub"), EINVAL);
	TRY(same_content(c, "full/x", "x", 1));
	SYS(rename("src", "empty"));        /* over an empty directory: replaces it */
	TRY(same_content(c, "empty/inside", "i", 1));
	REQUIRE(inode_of("src") == 0, "src still exists");
	expect_absent(c, "src");
	expect(c, "empty", "type=dir entries=1");
	expect_file(c, "empty/inside", 0644, "i", 1);
	expect_file(c, "full/x", 0644, "x", 1);
	expect_file(c, "plain", 0644, "p", 1);
	expect(c, ".", "type=dir entries=3");
	return CHECK_OK;
}

static int check_rename_across(struct ctx *c)
{
	struct stat d1;

	SYS(mkdir("d1", 0755));
	SYS(mkdir("d2", 0755));
	SYS(mkdir("d2/deep", 0755));
	TRY(put(c, "d1/f", "moved file", 10, 0644));
	SYS(mkdir("d1/sub", 0755));
	TRY(put(c, "d1/sub/g", "moved with its dir", 18, 0644));
	SYS(stat("d1", &d1));
	SYS(rename("d1/f", "d2/deep/renamed"));
	SYS(rename("d1/sub", "d2/sub"));
	TRY(require_entries(c, "d1", 0));
	TRY(same_content(c, "d2/deep/renamed", "moved file", 10));
	TRY(same_content(c, "d2/sub/g", "moved with its dir", 18));
	/* ".." of the moved directory follows it; both parents' link counts too. */
	REQUIRE(inode_of("d2/sub/..") == inode_of("d2"), "d2/sub/.. is not d2");
	TRY(require_nlink(c, "d1", d1.st_nlink - 1));
	TRY(require_nlink(c, "d2", 4));
	/* And back, over an existing file. */
	TRY(put(c, "d1/target", "old", 3, 0644));
	SYS(rename("d2/deep/renamed", "d1/target"));
	TRY(same_content(c, "d1/target", "moved file", 10));
	expect(c, "d1", "type=dir nlink=2 entries=1");
	expect_file(c, "d1/target", 0644, "moved file", 10);
	expect(c, "d2", "type=dir nlink=4 entries=2");
	expect(c, "d2/deep", "type=dir entries=0");
	expect_file(c, "d2/sub/g", 0644, "moved with its dir", 18);
	return CHECK_OK;
}

static int check_rename_noreplace(struct ctx *c)
{
	TRY(put(c, "a", "a", 1, 0644));
	TRY(put(c, "b", "b", 1, 0644));
	FAILS_WITH(renameat2(AT_FDCWD, "a", AT_FDCWD, "b", RENAME_NOREPLACE), EEXIST);
	TRY(same_content(c, "a", "a", 1));
	TRY(same_content(c, "b", "b", 1));
	SYS(renameat2(AT_FDCWD, "a", AT_FDCWD, "c", RENAME_NOREPLACE));
	expect_absent(c, "a");
	expect_file(c, "b", 0644, "b", 1);
	expect_file(c, "c", 0644, "a", 1);
	expect(c, ".", "type=dir entries=2");
	return CHECK_OK;
}

static int check_rename_exchange(struct ctx *c)
{
	ino_t file, dir;
	struct stat st;

	TRY(put(c, "file", "i am a file", 11, 0644));
	SYS(mkdir("dir", 0755));
	TRY(put(c, "dir/child", "child", 5, 0644));
	file = inode_of("file");
	dir = inode_of("dir");
	SYS(renameat2(AT_FDCWD, "file", AT_FDCWD, "dir", RENAME_EXCHANGE));
	REQUIRE(inode_of("dir") == file && inode_of("file") == dir, "the names were not exchanged");
	SYS(lstat("file", &st));
	REQUIRE(S_ISDIR(st.st_mode), "file is not the directory now");
	TRY(same_content(c, "dir", "i am a file", 11));
	TRY(same_content(c, "file/child", "child", 5));
	FAILS_WITH(renameat2(AT_FDCWD, "dir", AT_FDCWD, "missing", RENAME_EXCHANGE), ENOENT);
	FAILS_WITH(renameat2(AT_FDCWD, "dir", AT_FDCWD, "file", RENAME_EXCHANGE | RENAME_NOREPLACE),
		   EINVAL);
	expect_file(c, "dir", 0644, "i am a file", 11);
	expect(c, "file", "type=dir entries=1");
	expect_file(c, "file/child", 0644, "child", 5);
	return CHECK_OK;
}

/* ---- directories -------------------------------------------------------- */

static int check_mkdir_rmdir(struct ctx *c)
{
	struct stat st;

	SYS(mkdir("d", 0750));
	SYS(mkdir("d/a", 0755));
	SYS(mkdir("d/a/b", 0755));
	SYS(mkdir("d/a/b/c", 0755));
	SYS(stat("d", &st));
	REQUIRE((st.st_mode & 07777) == 0750, "d: mode %o", st.st_mode & 07777);
	TRY(require_nlink(c, "d/a", 3));
	FAILS_WITH(mkdir("d", 0755), EEXIST);
	FAILS_WITH2(rmdir("d/a"), ENOTEMPTY, EEXIST);
	SYS(rmdir("d/a/b/c"));
	FAILS_WITH(stat("d/a/b/c", &st), ENOENT);
	TRY(require_nlink(c, "d/a/b", 2));
	TRY(put(c, "d/file", "x", 1, 0644));
	FAILS_WITH(rmdir("d/file"), ENOTDIR);
	FAILS_WITH(unlink("d/a"), EISDIR);
	SYS(unlink("d/file"));
	expect(c, "d", "type=dir mode=0750 nlink=3 entries=1");
	expect(c, "d/a", "type=dir mode=0755 nlink=3 entries=1");
	expect(c, "d/a/b", "type=dir nlink=2 entries=0");
	expect_absent(c, "d/file");
	return CHECK_OK;
}

#define MANY 1000

static void many_name(char *buf, size_t size, int i)
{
	int n = snprintf(buf, size, "entry-%05d-", i);
	for (int k = 0; k < i % 37 && n < (int)size - 1; k++)
		buf[n++] = 'x';
	buf[n] = 0;
}

static int check_readdir_many(struct ctx *c)
{
	static char seen[MANY];
	char name[64];
	struct dirent *e;
	DIR *d;

	for (int i = 0; i < MANY; i++) {
		many_name(name, sizeof(name), i);
		TRY(touch(c, name, 0644));
	}
	for (int pass = 0; pass < 2; pass++) {     /* the second may come from a cache */
		int count = 0;
		memset(seen, 0, sizeof(seen));
		d = opendir(".");
		REQUIRE(d, "opendir: %s", strerror(errno));
		while ((errno = 0, e = readdir(d))) {
			int i;
			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			REQUIRE(sscanf(e->d_name, "entry-%d-", &i) == 1 && i >= 0 && i < MANY,
				"unexpected entry %s", e->d_name);
			many_name(name, sizeof(name), i);
			REQUIRE(!strcmp(name, e->d_name), "entry %s is not %s", e->d_name, name);
			REQUIRE(!seen[i], "entry %s listed twice", name);
			REQUIRE(e->d_type == DT_REG, "%s: d_type %d", name, e->d_type);
			seen[i] = 1;
			count++;
		}
		REQUIRE(!errno, "readdir: %s", strerror(errno));
		closedir(d);
		REQUIRE(count == MANY, "pass %d listed %d of %d entries", pass + 1, count, MANY);
	}
	expect(c, ".", "type=dir entries=%d", MANY);
	return CHECK_OK;
}

static int check_seekdir(struct ctx *c)
{
	enum { N = 300, ALL = N + 2 };
	static char names[ALL][256];
	static long pos[ALL + 1];
	const int probes[] = { 0, 1, 2, 77, 150, 299, ALL - 1, 3 };
	char name[16];
	struct dirent *e;
	int n = 0;
	DIR *d;

	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "s%03d", i);
		TRY(touch(c, name, 0644));
	}
	d = opendir(".");
	REQUIRE(d, "opendir: %s", strerror(errno));
	for (pos[n] = telldir(d); n < ALL && (e = readdir(d)); pos[n] = telldir(d)) {
		snprintf(names[n], sizeof(names[n]), "%s", e->d_name);
		n++;
	}
	REQUIRE(n == ALL, "listed %d entries, expected %d", n, ALL);
	REQUIRE(!readdir(d), "more entries than files");
	for (size_t k = 0; k < sizeof(probes) / sizeof(probes[0]); k++) {
		int i = probes[k];
		seekdir(d, pos[i]);
		e = readdir(d);
		REQUIRE(e && !strcmp(e->d_name, names[i]), "seekdir to entry %d gave %s, not %s",
			i, e ? e->d_name : "the end", names[i]);
	}
	rewinddir(d);
	e = readdir(d);
	REQUIRE(e && !strcmp(e->d_name, names[0]), "rewinddir: the first entry is %s, not %s",
		e ? e->d_name : "the end", names[0]);
	closedir(d);
	expect(c, ".", "type=dir entries=%d", N);
	return CHECK_OK;
}

static int check_readdir_after_changes(struct ctx *c)
{
	char name[16];
	struct dirent *e;
	int count = 0;
	DIR *d;

	SYS(mkdir("d", 0755));
	for (int i = 0; i < 100; i++) {
		snprintf(name, sizeof(name), "d/f%d", i);
		TRY(put(c, name, "", 0, 0644));
	}
	TRY(require_entries(c, "d", 100));
	for (int i = 0; i < 100; i += 2) {
		snprintf(name, sizeof(name), "d/f%d", i);
		SYS(unlink(name));
	}
	SYS(mkdir("d/newdir", 0755));
	SYS(symlink("f1", "d/link"));
	d = opendir("d");
	REQUIRE(d, "opendir: %s", strerror(errno));
	while ((e = readdir(d))) {
		int i = -1;
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		count++;
		if (!strcmp(e->d_name, "newdir"))
			REQUIRE(e->d_type == DT_DIR, "newdir: d_type %d", e->d_type);
		else if (!strcmp(e->d_name, "link"))
			REQUIRE(e->d_type == DT_LNK, "link: d_type %d", e->d_type);
		else
			REQUIRE(sscanf(e->d_name, "f%d", &i) == 1 && i % 2 == 1 && e->d_type == DT_REG,
				"unexpected entry %s (d_type %d)", e->d_name, e->d_type);
	}
	closedir(d);
	REQUIRE(count == 52, "%d entries after the changes, expected 52", count);
	expect(c, "d", "type=dir entries=52");
	expect(c, "d/newdir", "type=dir");
	expect_symlink(c, "d/link", "f1");
	expect_absent(c, "d/f0");
	expect_file(c, "d/f99", 0644, "", 0);
	return CHECK_OK;
}

const struct check dir_checks[] = {
	{ "links", "hard_links", check_hard_links },
	{ "links", "many_links", check_many_links },
	{ "links", "symlinks", check_symlinks },
	{ "links", "symlink_hardlink", check_symlink_hardlink },
	{ "rename", "rename_file", check_rename_file },
	{ "rename", "rename_open", check_rename_open },
	{ "rename", "rename_dirs", check_rename_dirs },
	{ "rename", "rename_across", check_rename_across },
	{ "rename", "rename_noreplace", check_rename_noreplace },
	{ "rename", "rename_exchange", check_rename_exchange },
	{ "dirs", "mkdir_rmdir", check_mkdir_rmdir },
	{ "readdir", "readdir_many", check_readdir_many },
	{ "readdir", "seekdir", check_seekdir },
	{ "readdir", "readdir_after_changes", check_readdir_after_changes },
	{ NULL, NULL, NULL }
};
