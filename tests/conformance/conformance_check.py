"""
conformance_check.py - run fsb-conformance, read its report, and verify its
expectations on the host directory.

Shared by the stream suite (tests/integration/test_conformance.py, which
runs the program on the host against an fsbridge-mount) and the VM suite
(tests/vm, where the program runs in the guest and its output comes back on
a serial port).  Either way the program has left its results in a directory
of the export; verify_host() checks each "expect" line against that
directory as the host sees it, so every result is checked on both sides.

  report = parse(text)                   the program's output
  problems = verify_host(root, report)   [] when the host agrees
  assert_passed(report, root)            both, as one AssertionError
"""

import os
import stat
import subprocess
import zlib
from urllib.parse import unquote_to_bytes

# statfs through the mount and on the host may differ a little (other
# writers on the disk, rounding): within 1 %.
FS_TOLERANCE = 0.01


class Report:
    """What fsb-conformance printed."""

    def __init__(self, text):
        self.text = text
        self.results = []        # (status, name, reason): "ok" / "not ok" / "skip"
        self.expects = []        # (path relative to its directory, {key: value})
        self.summary = None
        self.junk = []           # lines that are none of the above
        for line in text.splitlines():
            self._line(line.rstrip("\r"))

    def _line(self, line):
        if line.startswith("expect "):
            fields = line.split()
            keys = dict(f.split("=", 1) for f in fields[2:] if "=" in f)
            self.expects.append((_decode(fields[1]), keys))
        elif line.startswith("summary: "):
            self.summary = line
        elif line.startswith(("ok ", "not ok ", "skip ")):
            status = "not ok" if line.startswith("not ok ") else line.split(" ", 1)[0]
            rest = line[len(status) + 1:]
            name, _, reason = rest.partition(": ")
            self.results.append((status, name.strip(), reason))
        elif line.strip():
            self.junk.append(line)

    def names(self, status):
        return [name for s, name, _ in self.results if s == status]

    @property
    def failed(self):
        return [(name, why) for s, name, why in self.results if s == "not ok"]

    @property
    def skipped(self):
        return [(name, why) for s, name, why in self.results if s == "skip"]


def parse(text):
    return Report(text)


def _decode(s):
    return os.fsdecode(unquote_to_bytes(s))


def run(binary, directory, args=(), timeout=300, **popen_kwargs):
    """Run fsb-conformance on `directory` (on a mount); return its Report."""
    proc = subprocess.run([str(binary), *map(str, args), str(directory)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace", timeout=timeout, **popen_kwargs)
    report = Report(proc.stdout)
    report.returncode = proc.returncode
    return report


# --------------------------------------------------------------------------
# the host side


def _merged(expects):
    """One {key: value} per path, in the order of first appearance."""
    merged = {}
    for path, keys in expects:
        merged.setdefault(path, {}).update(keys)
    return merged


_TYPES = {"reg": stat.S_ISREG, "dir": stat.S_ISDIR, "lnk": stat.S_ISLNK, "fifo": stat.S_ISFIFO}


def _check_stat(path, rel, keys, root, problems):
    """The keys answered by lstat (checked before anything reads the file,
    which could change its atime)."""
    st = os.lstat(path)
    t = keys.get("type")
    if t and not _TYPES[t](st.st_mode):
        problems.append(f"{rel}: not a {t} on the host (mode {st.st_mode:o})")
        return None
    ints = {"mode": (stat.S_IMODE(st.st_mode), 8), "uid": (st.st_uid, 10),
            "gid": (st.st_gid, 10), "nlink": (st.st_nlink, 10), "size": (st.st_size, 10),
            "mtime": (st.st_mtime_ns, 10), "atime": (st.st_atime_ns, 10)}
    for key, (have, base) in ints.items():
        if key in keys and have != int(keys[key], base):
            shown = oct(have) if base == 8 else have
            problems.append(f"{rel}: {key} is {shown} on the host, expected {keys[key]}")
    alloc = st.st_blocks * 512
    if "alloc_min" in keys and alloc < int(keys["alloc_min"]):
        problems.append(f"{rel}: {alloc} bytes allocated on the host, expected at least "
                        f"{keys['alloc_min']}")
    if "alloc_max" in keys and alloc > int(keys["alloc_max"]):
        problems.append(f"{rel}: {alloc} bytes allocated on the host, expected at most "
                        f"{keys['alloc_max']}")
    if "inode_of" in keys:
        other = os.lstat(os.path.join(root, _decode(keys["inode_of"])))
        if (other.st_dev, other.st_ino) != (st.st_dev, st.st_ino):
            problems.append(f"{rel}: not the same inode as {_decode(keys['inode_of'])} "
                            f"on the host")
    return st


def _read_noatime(path):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOATIME)
    except PermissionError:
        fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


def _check_content(path, rel, keys, problems):
    if "crc32" in keys:
        have = zlib.crc32(_read_noatime(path)) & 0xffffffff
        if have != int(keys["crc32"], 16):
            problems.append(f"{rel}: content differs on the host (crc32 {have:08x}, "
                            f"expected {keys['crc32']})")
    if "at" in keys:
        offset, want = keys["at"].split(":", 1)
        want = bytes.fromhex(want)
        fd = os.open(path, os.O_RDONLY)
        try:
            have = os.pread(fd, len(want), int(offset))
        finally:
            os.close(fd)
        if have != want:
            problems.append(f"{rel}: bytes at {offset} are {have.hex()} on the host, "
                            f"expected {want.hex()}")
    if "target" in keys and os.readlink(path) != _decode(keys["target"]):
        problems.append(f"{rel}: symlink target {os.readlink(path)!r} on the host, "
                        f"expected {_decode(keys['target'])!r}")
    if "entries" in keys:
        have = len(os.listdir(path))
        if have != int(keys["entries"]):
            problems.append(f"{rel}: {have} entries on the host, expected {keys['entries']}")


def _check_xattrs(path, rel, keys, problems):
    for key, value in keys.items():
        if key.startswith("xattr."):
            name = key[len("xattr."):]
            try:
                have = os.getxattr(path, name, follow_symlinks=False)
            except OSError as e:
                problems.append(f"{rel}: xattr {name}: {e.strerror} on the host")
                continue
            if have != bytes.fromhex(value):
                problems.append(f"{rel}: xattr {name} is {have[:32].hex()}... on the host")
    if "xattrs" in keys:
        have = sorted(n for n in os.listxattr(path, follow_symlinks=False)
                      if n.startswith("user."))
        want = sorted(n for n in keys["xattrs"].split(",") if n)
        if have != want:
            problems.append(f"{rel}: user xattrs {have} on the host, expected {want}")


def _check_statfs(path, rel, keys, problems):
    if "fs_bytes" not in keys and "fs_files" not in keys:
        return
    sv = os.statvfs(path)
    for key, have in (("fs_bytes", sv.f_blocks * sv.f_frsize), ("fs_files", sv.f_files)):
        if key in keys:
            want = int(keys[key])
            if abs(have - want) > max(want, have) * FS_TOLERANCE:
                problems.append(f"{rel}: statfs {key} {want} through the mount, {have} "
                                f"on the host")


def verify_host(root, report):
    """Check every expectation of `report` against directory `root` (the
    program's directory as the host sees it).  Returns a list of problems."""
    problems = []
    for rel, keys in _merged(report.expects).items():
        path = os.path.join(str(root), rel)
        if keys.get("type") == "none":
            if os.path.lexists(path):
                problems.append(f"{rel}: exists on the host, expected it gone")
            continue
        try:
            if _check_stat(path, rel, keys, str(root), problems) is None:
                continue
            _check_content(path, rel, keys, problems)
            _check_xattrs(path, rel, keys, problems)
            _check_statfs(path, rel, keys, problems)
        except OSError as e:
            problems.append(f"{rel}: {e.strerror} on the host ({e.filename})")
    return problems


def assert_passed(report, root, context=""):
    """Fail (AssertionError) unless every check passed or skipped, the
    summary line is there, and the host agrees with every expectation."""
    lines = []
    if report.summary is None:
        lines.append("no summary line: fsb-conformance did not finish")
    lines += [f"not ok {name}: {why}" for name, why in report.failed]
    if not report.expects and not report.failed:
        lines.append("no expectations at all: nothing was checked on the host")
    problems = verify_host(root, report)
    lines += [f"host: {p}" for p in problems]
    if lines:
        tail = "\n".join(report.text.splitlines()[-15:])
        raise AssertionError(f"{context}conformance: {len(report.failed)} checks failed, "
                             f"{len(problems)} host differences\n" + "\n".join(lines) +
                             f"\n---- last lines of the output ----\n{tail}")
    return report
