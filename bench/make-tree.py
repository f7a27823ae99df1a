#!/usr/bin/python3
"""make-tree.py - writes a synthetic source tree as a tarball, deterministically.

    make-tree.py OUT.tar [FILES]

FILES (default 15000) text files of C-like source in about FILES/15
directories up to 4 levels deep.  File sizes follow a log-normal spread
like a real source tree (median about 3 KiB, a few files over 100 KiB; about
90 MiB in all for 15,000 files).  One line in about 1% of the files contains
the word "fsbridge_needle", which bench.sh greps for.  The same arguments
always give the same bytes: seeded random numbers, sorted names, fixed
mtimes and owners.
"""
import io
import random
import sys
import tarfile

WORDS = ("static int void struct unsigned long char const return if else for "
         "while size_t uint64_t buffer length offset inode entry request reply "
         "session export error count flags mode lock read write open close "
         "node parent name data cache table hash next prev list init free").split()


def line_pool(rng, n=4000):
    pool = []
    for _ in range(n):
        indent = "    " * rng.randrange(0, 3)
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(2, 11)))
        end = rng.choice([";", ";", ";", " {", "", "}", ");"])
        pool.append(f"{indent}{words}{end}\n")
    return pool


def main():
    out = sys.argv[1]
    nfiles = int(sys.argv[2]) if len(sys.argv) > 2 else 15000
    rng = random.Random(20261121)
    pool = line_pool(rng)
    ndirs = max(1, nfiles // 15)
    dirs = ["src"]
    while len(dirs) < ndirs:
        parent = rng.choice(dirs)
        if parent.count("/") < 4:
            dirs.append(f"{parent}/d{len(dirs):04d}")
    with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as tar:
        def add(name, data=None):
            info = tarfile.TarInfo(name)
            info.mtime = 1700000000
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if data is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                info.mode = 0o644
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        for d in sorted(dirs):
            add(d)
        files = []
        for i in range(nfiles):
            files.append(f"{rng.choice(dirs)}/f{i:05d}.{rng.choice('chchcs')}")
        for name in sorted(files):
            size = min(int(rng.lognormvariate(8.0, 1.1)), 400000)
            chunks, n = [], 0
            while n < size:
                s = rng.choice(pool)
                chunks.append(s)
                n += len(s)
            if rng.random() < 0.01:
                chunks.insert(rng.randrange(len(chunks) + 1), "/* fsbridge_needle */\n")
            add(name, "".join(chunks).encode())


if __name__ == "__main__":
    main()
