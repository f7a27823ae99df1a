/*
 * checks_files.c - regular files: data, sizes, holes, allocation, mmap,
 * durability, file handles (groups files, sync, mmap, fallocate, seek, copy,
 * handles).
 *
 * Each check reads its results back through the mount and states the
 * content the host file must hold (expect_file), so a file that only
 * looks right in the guest's page cache still fails on the host side.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conformance.h"

static int check_create_write_read(struct ctx *c)
{
	static const char small[] = "hello, fsbridge\n";
	size_t big_len = 3 * MiB + 12345;
	char *big = pattern(big_len, 1);
	struct stat st;

	TRY(put(c, "small", small, sizeof(small) - 1, 0644));
	TRY(same_content(c, "small", small, sizeof(small) - 1));
	SYS(stat("small", &st));
	REQUIRE(S_ISREG(st.st_mode), "small: mode %o is not a regular file", st.st_mode);
	REQUIRE(st.st_size == sizeof(small) - 1, "small: size %lld", (long long)st.st_size);
	/* More than one 1 MiB request: split by the kernel and the transport. */
	TRY(put(c, "big", big, big_len, 0644));
	SYS(stat("big", &st));
	REQUIRE(st.st_size == (off_t)big_len, "big: size %lld, expected %zu",
		(long long)st.st_size, big_len);
	TRY(same_content(c, "big", big, big_len));
	expect_file(c, "small", 0644, small, sizeof(small) - 1);
	expect_file(c, "big", 0644, big, big_len);
	return CHECK_OK;
}

static int check_overwrite(struct ctx *c)
{
	size_t len = 64 * KiB;
	char *data = pattern(len + 3, 2), xyz[3000], back[3000];
	struct stat st;
	int fd;

	TRY(put(c, "f", data, len, 0644));
	for (size_t i = 0; i < sizeof(xyz); i++)
		xyz[i] = "XYZ"[i % 3];
	fd = SYS(open("f", O_RDWR));
	REQUIRE(SYS(pwrite(fd, xyz, sizeof(xyz), 5000)) == sizeof(xyz), "short pwrite");
	/* Two bytes before the end: extends the file by three. */
	REQUIRE(SYS(pwrite(fd, "tail!", 5, len - 2)) == 5, "short pwrite at the end");
	REQUIRE(SYS(pread(fd, back, sizeof(back), 5000)) == sizeof(back), "short pread");
	REQUIRE(!memcmp(back, xyz, sizeof(xyz)), "pread does not return what pwrite wrote");
	SYS(fstat(fd, &st));
	REQUIRE(st.st_size == (off_t)len + 3, "size %lld after writing past the end",
		(long long)st.st_size);
	SYS(close(fd));
	memcpy(data + 5000, xyz, sizeof(xyz));
	memcpy(data + len - 2, "tail!", 5);
	TRY(same_content(c, "f", data, len + 3));
	expect_file(c, "f", 0644, data, len + 3);
	return CHECK_OK;
}

static int check_append(struct ctx *c)
{
	static const char want[] = "start\none\ntwo\nthree\n";
	struct stat st;
	int a, b;

	TRY(put(c, "log", "start\n", 6, 0644));
	a = SYS(open("log", O_WRONLY | O_APPEND));
	b = SYS(open("log", O_WRONLY | O_APPEND));
	SYS(write(a, "one\n", 4));
	SYS(write(b, "two\n", 4));
	SYS(lseek(a, 0, SEEK_SET));        /* O_APPEND ignores the offset */
	SYS(write(a, "three\n", 6));
	SYS(fstat(b, &st));
	REQUIRE(st.st_size == sizeof(want) - 1, "size %lld seen through the other fd",
		(long long)st.st_size);
	SYS(close(a));
	SYS(close(b));
	TRY(same_content(c, "log", want, sizeof(want) - 1));
	expect_file(c, "log", 0644, want, sizeof(want) - 1);
	return CHECK_OK;
}

static int check_o_excl(struct ctx *c)
{
	struct stat st;
	int fd;

	TRY(put(c, "exists", "keep me", 7, 0644));
	FAILS_WITH(open("exists", O_WRONLY | O_CREAT | O_EXCL, 0644), EEXIST);
	TRY(same_content(c, "exists", "keep me", 7));
	/* O_EXCL does not follow a symlink, even a dangling one. */
	SYS(symlink("nowhere", "dangling"));
	FAILS_WITH(open("dangling", O_WRONLY | O_CREAT | O_EXCL, 0644), EEXIST);
	FAILS_WITH(lstat("nowhere", &st), ENOENT);
	fd = SYS(open("fresh", O_WRONLY | O_CREAT | O_EXCL, 0600));
	SYS(write(fd, "new", 3));
	SYS(close(fd));
	SYS(stat("fresh", &st));
	REQUIRE((st.st_mode & 07777) == 0600, "fresh: mode %o, expected 0600", st.st_mode & 07777);
	expect_file(c, "exists", 0644, "keep me", 7);
	expect_symlink(c, "dangling", "nowhere");
	expect_absent(c, "nowhere");
	expect_file(c, "fresh", 0600, "new", 3);
	return CHECK_OK;
}

static int check_o_trunc(struct ctx *c)
{
	char *data = pattern(100 * KiB, 3), head[10];
	struct stat st;
	int fd;

	TRY(put(c, "t", data, 100 * KiB, 0644));
	fd = SYS(open("t", O_RDONLY));      /* into the page cache, in cached modes */
	REQUIRE(SYS(read(fd, head, sizeof(head))) == sizeof(head), "short read");
	SYS(close(fd));
	fd = SYS(open("t", O_WRONLY | O_TRUNC));
	SYS(fstat(fd, &st));
	REQUIRE(st.st_size == 0, "fstat after O_TRUNC: size %lld", (long long)st.st_size);
	SYS(stat("t", &st));
	REQUIRE(st.st_size == 0, "stat after O_TRUNC: size %lld", (long long)st.st_size);
	SYS(write(fd, "short", 5));
	SYS(close(fd));
	TRY(same_content(c, "t", "short", 5));
	expect_file(c, "t", 0644, "short", 5);
	return CHECK_OK;
}

static int check_truncate(struct ctx *c)
{
	char *data = pattern(10000, 4), *want = calloc(1, 5000);
	struct stat st;

	TRY(put(c, "f", data, 10000, 0644));
	SYS(truncate("f", 100));
	SYS(stat("f", &st));
	REQUIRE(st.st_size == 100, "size %lld after truncate to 100", (long long)st.st_size);
	TRY(same_content(c, "f", data, 100));
	SYS(truncate("f", 5000));
	memcpy(want, data, 100);            /* the old bytes must not come back */
	TRY(same_content(c, "f", want, 5000));
	expect_file(c, "f", 0644, want, 5000);
	return CHECK_OK;
}

static int check_ftruncate(struct ctx *c)
{
	size_t len = 3 * 4096 + 17;
	char *data = pattern(len, 5), *want = calloc(1, 20000), *back = malloc(20000);
	struct stat st;
	int fd = SYS(open("f", O_RDWR | O_CREAT, 0644));

	SYS(write(fd, data, len));
	SYS(ftruncate(fd, 4097));
	SYS(fstat(fd, &st));
	REQUIRE(st.st_size == 4097, "size %lld after ftruncate to 4097", (long long)st.st_size);
	REQUIRE(SYS(pread(fd, back, 20000, 0)) == 4097, "pread past the new end");
	REQUIRE(!memcmp(back, data, 4097), "content changed by ftruncate");
	SYS(ftruncate(fd, 20000));
	memcpy(want, data, 4097);
	REQUIRE(SYS(pread(fd, back, 20000, 0)) == 20000, "short pread after growing");
	REQUIRE(!memcmp(back, want, 20000), "growing with ftruncate shows old bytes");
	SYS(pwrite(fd, "end", 3, 19997));
	SYS(close(fd));
	memcpy(want + 19997, "end", 3);
	TRY(same_content(c, "f", want, 20000));
	expect_file(c, "f", 0644, want, 20000);
	return CHECK_OK;
}

static int check_sparse(struct ctx *c)
{
	static const char tail[8] = "\0\0\0\0\0end";
	off_t off = 5 * GiB;                  /* past 4 GiB: 64-bit offsets */
	char buf[4096], zeros[4096] = { 0 };
	struct stat st;
	int fd = SYS(open("sparse", O_RDWR | O_CREAT, 0644));

	REQUIRE(SYS(pwrite(fd, "end", 3, off)) == 3, "short pwrite at 5 GiB");
	SYS(fstat(fd, &st));
	REQUIRE(st.st_size == off + 3, "size %lld", (long long)st.st_size);
	REQUIRE(SYS(pread(fd, buf, sizeof(buf), 4 * GiB)) == sizeof(buf), "short pread at 4 GiB");
	REQUIRE(!memcmp(buf, zeros, sizeof(buf)), "the hole at 4 GiB is not zeros");
	REQUIRE(SYS(pread(fd, buf, sizeof(buf), 0)) == sizeof(buf), "short pread at 0");
	REQUIRE(!memcmp(buf, zeros, sizeof(buf)), "the hole at 0 is not zeros");
	REQUIRE(SYS(pread(fd, buf, 100, off - 5)) == 8, "pread at the end: wrong length");
	REQUIRE(!memcmp(buf, tail, 8), "the last bytes are wrong");
	SYS(fsync(fd));
	SYS(fstat(fd, &st));
	REQUIRE(st.st_blocks * 512 <= MiB, "not sparse: %lld blocks", (long long)st.st_blocks);
	SYS(close(fd));
	expect(c, "sparse", "type=reg size=%lld alloc_max=%ld at=%lld:%s", (long long)off + 3,
	       MiB, (long long)off - 5, hex(tail, 8));
	return CHECK_OK;
}

static int check_unlink_open(struct ctx *c)
{
	char buf[32];
	struct stat st;
	int fd;

	TRY(put(c, "ghost", "still readable", 14, 0644));
	fd = SYS(open("ghost", O_RDWR));
	SYS(unlink("ghost"));
	FAILS_WITH(lstat("ghost", &st), ENOENT);
	REQUIRE(SYS(read(fd, buf, sizeof(buf))) == 14 && !memcmp(buf, "still readable", 14),
		"an unlinked open file lost its content");
	REQUIRE(SYS(pwrite(fd, "!", 1, 14)) == 1, "short write to an unlinked file");
	REQUIRE(SYS(pread(fd, buf, sizeof(buf), 0)) == 15, "the write to an unlinked file is lost");
	SYS(fstat(fd, &st));
	REQUIRE(st.st_nlink == 0, "nlink %lu of an unlinked open file", (unsigned long)st.st_nlink);
	SYS(close(fd));
	expect_absent(c, "ghost");
	expect(c, ".", "type=dir entries=0");
	return CHECK_OK;
}

static int check_long_names(struct ctx *c)
{
	char n255[256], d255[256], n256[257], utf[256];
	struct stat st;

	memset(n255, 'n', 255), n255[255] = 0;
	memset(d255, 'd', 255), d255[255] = 0;
	memset(n256, 'n', 256), n256[256] = 0;
	for (int i = 0; i < 127; i++)          /* 127 two-byte characters and an x */
		memcpy(utf + 2 * i, "\xc3\xa9", 2);
	utf[254] = 'x', utf[255] = 0;
	TRY(put(c, n255, "long name", 9, 0644));
	SYS(mkdir(d255, 0755));
	TRY(put(c, utf, "utf", 3, 0644));
	TRY(same_content(c, n255, "long name", 9));
	TRY(same_content(c, utf, "utf", 3));
	FAILS_WITH(open(n256, O_WRONLY | O_CREAT, 0644), ENAMETOOLONG);
	FAILS_WITH(mkdir(n256, 0755), ENAMETOOLONG);
	FAILS_WITH(symlink("target", n256), ENAMETOOLONG);
	FAILS_WITH(rename(n255, n256), ENAMETOOLONG);
	FAILS_WITH(link(n255, n256), ENAMETOOLONG);
	FAILS_WITH(stat(n256, &st), ENAMETOOLONG);
	expect_file(c, n255, 0644, "long name", 9);
	expect(c, d255, "type=dir mode=0755");
	expect_file(c, utf, 0644, "utf", 3);
	expect(c, ".", "type=dir entries=3");
	return CHECK_OK;
}

/* ext4 hands a freed inode number to the next new file at once: a new file
 * must never show the data or size of the one it replaces. */
static int check_inode_reuse(struct ctx *c)
{
	char first[2048], second[64];
	struct stat st;

	for (int i = 0; i < 50; i++) {
		size_t n = 0;
		for (int k = 0; k < i + 3; k++)
			n += (size_t)snprintf(first + n, sizeof(first) - n, "first file %d ", i);
		TRY(put(c, "f", first, n, 0644));
		TRY(same_content(c, "f", first, n));
		SYS(unlink("f"));
		n = (size_t)snprintf(second, sizeof(second), "second %d", i);
		TRY(put(c, "g", second, n, 0644));
		SYS(stat("g", &st));
		REQUIRE(st.st_size == (off_t)n, "round %d: the new file has size %lld", i,
			(long long)st.st_size);
		TRY(same_content(c, "g", second, n));
		SYS(unlink("g"));
	}
	expect(c, ".", "type=dir entries=0");
	return CHECK_OK;
}

static int check_fsync(struct ctx *c)
{
	int fd = SYS(open("durable", O_WRONLY | O_CREAT, 0644)), dfd;

	SYS(write(fd, "first", 5));
	SYS(fsync(fd));
	SYS(write(fd, "+second", 7));
	SYS(fdatasync(fd));
	dfd = SYS(open(".", O_RDONLY | O_DIRECTORY));
	SYS(fsync(dfd));                    /* FUSE_FSYNCDIR */
	SYS(syncfs(dfd));
	SYS(close(dfd));
	SYS(close(fd));
	TRY(same_content(c, "durable", "first+second", 12));
	expect_file(c, "durable", 0644, "first+second", 12);
	return CHECK_OK;
}

static int check_mmap_shared_write(struct ctx *c)
{
	size_t size = 3 * 4096;
	char *want = calloc(1, size), *m;
	int fd;

	TRY(put(c, "m", want, size, 0644));
	fd = SYS(open("m", O_RDWR));
	m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED && errno == ENODEV)
		SKIP("shared mmap: ENODEV (a direct-io mount on a kernel without "
		     "FUSE_DIRECT_IO_ALLOW_MMAP, before 6.6)");
	REQUIRE(m != MAP_FAILED, "mmap: %s", strerror(errno));
	memcpy(m + 100, "hello", 5);
	memcpy(m + 5000, "world", 5);
	memcpy(m + size - 3, "END", 3);
	SYS(msync(m, size, MS_SYNC));
	SYS(munmap(m, size));
	SYS(close(fd));
	memcpy(want + 100, "hello", 5);
	memcpy(want + 5000, "world", 5);
	memcpy(want + size - 3, "END", 3);
	TRY(same_content(c, "m", want, size));
	expect_file(c, "m", 0644, want, size);
	return CHECK_OK;
}

/* MAP_PRIVATE, as the loader maps programs: works in every cache mode. */
static int check_mmap_read(struct ctx *c)
{
	size_t len = 5 * 4096 + 100;
	char *data = pattern(len, 10), *m;
	int fd;

	TRY(put(c, "r", data, len, 0644));
	fd = SYS(open("r", O_RDONLY));
	m = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
	REQUIRE(m != MAP_FAILED, "mmap: %s", strerror(errno));
	REQUIRE(!memcmp(m, data, len), "the mapping differs from the file");
	SYS(munmap(m, len));
	SYS(close(fd));
	expect_file(c, "r", 0644, data, len);
	return CHECK_OK;
}

static int check_fallocate(struct ctx *c)
{
	char *want = calloc(1, MiB), back[10];
	struct stat st;
	int fd = SYS(open("alloc", O_RDWR | O_CREAT, 0644)), err;

	SYS(write(fd, "abc", 3));
	err = posix_fallocate(fd, 0, MiB);
	REQUIRE(err == 0, "posix_fallocate: %s", strerror(err));
	SYS(fstat(fd, &st));
	REQUIRE(st.st_size == MiB, "size %lld after posix_fallocate", (long long)st.st_size);
	REQUIRE(SYS(pread(fd, back, 10, 0)) == 10 && !memcmp(back, "abc\0\0\0\0\0\0\0", 10),
		"posix_fallocate changed the data");
	SYS(close(fd));
	memcpy(want, "abc", 3);

	/* KEEP_SIZE: blocks past the end, size unchanged. */
	fd = SYS(open("keep", O_RDWR | O_CREAT, 0644));
	if (fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 256 * KiB) < 0 && errno == EOPNOTSUPP)
		SKIP("fallocate(FALLOC_FL_KEEP_SIZE): EOPNOTSUPP");
	SYS(fstat(fd, &st));
	REQUIRE(st.st_size == 0, "size %lld after FALLOC_FL_KEEP_SIZE", (long long)st.st_size);
	SYS(close(fd));
	expect(c, "alloc", "type=reg size=%ld crc32=%08x alloc_min=%ld", MiB,
	       crc32_of(want, MiB), MiB);
	expect(c, "keep", "type=reg size=0 alloc_min=%ld", 256 * KiB);
	return CHECK_OK;
}

static int check_punch_hole(struct ctx *c)
{
	size_t len = 256 * KiB;
	char *data = pattern(len, 8), *back = malloc(64 * KiB), *zeros = calloc(1, 64 * KiB);
	struct stat st;
	int fd;

	TRY(put(c, "punch", data, len, 0644));
	TRY(same_content(c, "punch", data, len));       /* in the page cache now */
	fd = SYS(open("punch", O_RDWR));
	SYS(fsync(fd));
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 64 * KiB, 64 * KiB) < 0 &&
	    errno == EOPNOTSUPP)
		SKIP("fallocate(FALLOC_FL_PUNCH_HOLE): EOPNOTSUPP");
	SYS(fstat(fd, &st));
	REQUIRE(st.st_size == (off_t)len, "size %lld after punching", (long long)st.st_size);
	REQUIRE(SYS(pread(fd, back, 64 * KiB, 64 * KiB)) == 64 * KiB, "short pread");
	REQUIRE(!memcmp(back, zeros, 64 * KiB), "the punched range still has data");
	SYS(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 192 * KiB, 32 * KiB));
	SYS(close(fd));
	memset(data + 64 * KiB, 0, 64 * KiB);
	memset(data + 192 * KiB, 0, 32 * KiB);
	TRY(same_content(c, "punch", data, len));
	/* 96 KiB punched: at least 64 KiB must really be freed on the host. */
	expect(c, "punch", "type=reg size=%zu crc32=%08x alloc_max=%ld", len,
	       crc32_of(data, len), 192 * KiB);
	return CHECK_OK;
}

/* data [0, 64K), hole [64K, 2M), data [2M, 2M+64K), EOF. */
static int check_seek_data_hole(struct ctx *c)
{
	size_t size = 2 * MiB + 64 * KiB;
	char *want = calloc(1, size), *a = pattern(64 * KiB, 6), *b = pattern(64 * KiB, 7);
	char back[16];
	int fd = SYS(open("holes", O_RDWR | O_CREAT, 0644));
	off_t got;

	SYS(pwrite(fd, a, 64 * KiB, 0));
	SYS(pwrite(fd, b, 64 * KiB, 2 * MiB));
	SYS(fsync(fd));                     /* writeback: the host holds the extents now */
	REQUIRE((got = SYS(lseek(fd, 0, SEEK_DATA))) == 0, "SEEK_DATA from 0: %lld", (long long)got);
	REQUIRE((got = SYS(lseek(fd, 0, SEEK_HOLE))) == 64 * KiB, "SEEK_HOLE from 0: %lld",
		(long long)got);
	REQUIRE((got = SYS(lseek(fd, 64 * KiB, SEEK_DATA))) == 2 * MiB,
		"SEEK_DATA from 64K: %lld", (long long)got);
	REQUIRE((got = SYS(lseek(fd, 2 * MiB, SEEK_HOLE))) == (off_t)size,
		"SEEK_HOLE from 2M: %lld", (long long)got);
	FAILS_WITH(lseek(fd, size, SEEK_DATA), ENXIO);
	/* The offset really moved: a read from it returns the second extent. */
	SYS(lseek(fd, 64 * KiB, SEEK_DATA));
	REQUIRE(SYS(read(fd, back, 16)) == 16 && !memcmp(back, b, 16),
		"read after SEEK_DATA is not the data there");
	SYS(close(fd));
	memcpy(want, a, 64 * KiB);
	memcpy(want + 2 * MiB, b, 64 * KiB);
	expect(c, "holes", "type=reg size=%zu crc32=%08x alloc_max=%ld", size,
	       crc32_of(want, size), MiB);
	return CHECK_OK;
}

static int check_copy_file_range(struct ctx *c)
{
	size_t len = 300 * KiB + 7, done = 0, want_len = len - 1000;
	char *src = pattern(len, 9), *dst = malloc(10 * KiB + want_len);
	loff_t soff = 1000, doff = 10 * KiB;
	int sfd, dfd;

	memset(dst, '=', 50 * KiB);
	TRY(put(c, "src", src, len, 0644));
	TRY(put(c, "dst", dst, 50 * KiB, 0644));
	sfd = SYS(open("src", O_RDONLY));
	dfd = SYS(open("dst", O_WRONLY));
	while (done < want_len) {
		ssize_t n = SYS(copy_file_range(sfd, &soff, dfd, &doff, want_len - done, 0));
		REQUIRE(n > 0, "copy_file_range returned 0 after %zu of %zu bytes", done, want_len);
		done += (size_t)n;
	}
	/* Explicit offsets leave the file offsets alone. */
	REQUIRE(SYS(lseek(sfd, 0, SEEK_CUR)) == 0, "the source offset moved");
	REQUIRE(SYS(lseek(dfd, 0, SEEK_CUR)) == 0, "the destination offset moved");
	SYS(close(sfd));
	SYS(close(dfd));
	memcpy(dst + 10 * KiB, src + 1000, want_len);
	TRY(same_content(c, "dst", dst, 10 * KiB + want_len));
	expect_file(c, "dst", 0644, dst, 10 * KiB + want_len);
	expect_file(c, "src", 0644, src, len);
	return CHECK_OK;
}

/* open(dir, O_TMPFILE) makes an unnamed file (glibc's tmpfile() tries it
 * first); linkat names it, through /proc/self/fd (AT_SYMLINK_FOLLOW: link(2)
 * would link procfs's symlink itself, EXDEV) and, for root, with
 * AT_EMPTY_PATH.  O_EXCL makes one that can never be named. */
static int check_tmpfile(struct ctx *c)
{
	char proc[64];
	int fd = open(".", O_TMPFILE | O_RDWR, 0600);

	if (fd < 0 && errno == EOPNOTSUPP)
		SKIP("O_TMPFILE: %s (a FUSE guest before Linux 6.1, or an overlay export, "
		     "has no FUSE_TMPFILE)", strerror(errno));
	REQUIRE(fd >= 0, "open(\".\", O_TMPFILE): %s", strerror(errno));
	SYS(fchmod(fd, 0640));
	SYS(write(fd, "unnamed", 7));
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	SYS(linkat(AT_FDCWD, proc, AT_FDCWD, "named", AT_SYMLINK_FOLLOW));
	SYS(close(fd));
	TRY(same_content(c, "named", "unnamed", 7));
	expect_file(c, "named", 0640, "unnamed", 7);
	if (c->root) {
		fd = SYS(open(".", O_TMPFILE | O_RDWR, 0600));
		SYS(write(fd, "by fd", 5));
		SYS(linkat(fd, "", AT_FDCWD, "by_fd", AT_EMPTY_PATH));
		SYS(close(fd));
		expect_file(c, "by_fd", 0600, "by fd", 5);
	}
	fd = SYS(open(".", O_TMPFILE | O_RDWR | O_EXCL, 0600));
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	FAILS_WITH(linkat(AT_FDCWD, proc, AT_FDCWD, "never", AT_SYMLINK_FOLLOW), ENOENT);
	SYS(close(fd));
	return CHECK_OK;
}

/* ---- file handles ------------------------------------------------------ */

/* The handle of PATH in a malloc'd buffer (never freed: the check's
 * process exits). */
static int handle_of(struct ctx *c, const char *path, struct file_handle **out)
{
	struct file_handle *h = malloc(sizeof(*h) + MAX_HANDLE_SZ);
	int mount_id;
	REQUIRE(h, "out of memory");
	h->handle_bytes = MAX_HANDLE_SZ;
	SYS(name_to_handle_at(AT_FDCWD, path, h, &mount_id, 0));
	*out = h;
	return CHECK_OK;
}

/* Makes the kernel evict every unused inode of the mount, so that opening
 * by handle has to ask the filesystem again. */
static int drop_inodes(struct ctx *c)
{
	int fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
	if (fd < 0)
		SKIP("/proc/sys/vm/drop_caches: %s (the cached inode would answer)",
		     strerror(errno));
	sync();
	SYS(write(fd, "2", 1));
	SYS(close(fd));
	return CHECK_OK;
}

/* name_to_handle_at / open_by_handle_at, as an NFS server re-exporting the
 * mount or a backup tool uses them: a handle opens the same file after
 * the kernel dropped the inode, and a deleted file's handle is ESTALE. */
static int check_open_by_handle(struct ctx *c)
{
	struct file_handle *kept, *gone;
	struct stat want, got;
	char buf[16] = { 0 };

	if (!c->root)
		SKIP("open_by_handle_at needs CAP_DAC_READ_SEARCH (not root)");
	TRY(put(c, "kept", "kept\n", 5, 0644));
	TRY(put(c, "gone", "gone\n", 5, 0644));
	TRY(handle_of(c, "kept", &kept));
	TRY(handle_of(c, "gone", &gone));
	SYS(stat("kept", &want));
	SYS(unlink("gone"));
	TRY(drop_inodes(c));
	int dir = SYS(open(".", O_RDONLY | O_DIRECTORY));
	int fd = SYS(open_by_handle_at(dir, kept, O_RDONLY));
	SYS(fstat(fd, &got));
	REQUIRE(got.st_ino == want.st_ino, "the handle opened inode %llu, not %llu",
		(unsigned long long)got.st_ino, (unsigned long long)want.st_ino);
	REQUIRE(SYS(read(fd, buf, sizeof(buf))) == 5 && memcmp(buf, "kept\n", 5) == 0,
		"the handle's file reads \"%s\"", buf);
	SYS(close(fd));
	FAILS_WITH(open_by_handle_at(dir, gone, O_RDONLY), ESTALE);
	SYS(close(dir));
	expect_file(c, "kept", 0644, "kept\n", 5);
	expect_absent(c, "gone");
	return CHECK_OK;
}

const struct check file_checks[] = {
	{ "files", "create_write_read", check_create_write_read },
	{ "files", "overwrite", check_overwrite },
	{ "files", "append", check_append },
	{ "files", "o_excl", check_o_excl },
	{ "files", "o_trunc", check_o_trunc },
	{ "files", "truncate", check_truncate },
	{ "files", "ftruncate", check_ftruncate },
	{ "files", "sparse", check_sparse },
	{ "files", "unlink_open", check_unlink_open },
	{ "files", "long_names", check_long_names },
	{ "files", "inode_reuse", check_inode_reuse },
	{ "files", "tmpfile", check_tmpfile },
	{ "sync", "fsync", check_fsync },
	{ "mmap", "mmap_shared_write", check_mmap_shared_write },
	{ "mmap", "mmap_read", check_mmap_read },
	{ "fallocate", "fallocate", check_fallocate },
	{ "fallocate", "punch_hole", check_punch_hole },
	{ "seek", "seek_data_hole", check_seek_data_hole },
	{ "copy", "copy_file_range", check_copy_file_range },
	{ "handles", "open_by_handle", check_open_by_handle },
	{ NULL, NULL, NULL }
};
