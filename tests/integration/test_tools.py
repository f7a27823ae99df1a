"""
test_tools.py - real programs on the mount: git, cp, tar.

git exercises what editors and build tools do: lock files created with
O_EXCL, renames over existing files, hard links or renames of pack files,
fsync, mmap of pack indexes, directory walks.  The repository made
through the mount must then be intact on the host (git fsck there).
"""

import hashlib
import os
import shutil

import pytest

import helpers


def git_env(tmp):
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.com",
        "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z",
        "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z",
        "LC_ALL": "C",
    }
    return env


@pytest.fixture
def git():
    exe = shutil.which("git")
    if exe is None:
        pytest.skip("git is not installed (scripts/install-deps.sh installs it)")
    return exe


@pytest.mark.deadline(90)
def test_git_round_trip(fs, git, fsb_workdir):
    home = fsb_workdir / "home"
    home.mkdir()
    env = git_env(home)
    repo = fs.mnt / "repo"

    def g(*args, cwd=repo, timeout=30):
        return helpers.run([git, *args], cwd=cwd, env=env, timeout=timeout)

    g("init", "-q", "-b", "main", str(repo), cwd=fs.mnt)
    (repo / "src").mkdir()
    for i in range(50):
        (repo / "src" / f"file{i}.txt").write_text(f"line {i}\n" * (i + 1))
    (repo / "bin.dat").write_bytes(bytes(range(256)) * 512)
    os.symlink("src/file1.txt", repo / "link")
    os.chmod(repo / "src" / "file2.txt", 0o755)
    g("add", "-A")
    g("commit", "-q", "-m", "first")
    assert g("status", "--porcelain").stdout == ""

    # A second commit: modify, delete, rename.
    (repo / "src" / "file3.txt").write_text("changed\n")
    os.unlink(repo / "src" / "file4.txt")
    g("mv", "src/file5.txt", "src/renamed.txt")
    g("add", "-A")
    g("commit", "-q", "-m", "second")
    assert g("status", "--porcelain").stdout == ""

    g("gc", "-q", "--aggressive", "--prune=now")
    assert g("status", "--porcelain").stdout == ""
    assert g("rev-list", "--count", "HEAD").stdout.strip() == "2"
    assert g("fsck", "--full", "--strict").returncode == 0
    head = g("rev-parse", "HEAD").stdout.strip()
    packs = [p for p in os.listdir(repo / ".git" / "objects" / "pack") if p.endswith(".pack")]
    assert packs, "git gc made no pack"

    # The host copy is a complete, valid repository with the same history.
    host_repo = fs.host / "repo"
    host_env = dict(env, GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="safe.directory",
                    GIT_CONFIG_VALUE_0="*")
    hg = lambda *args: helpers.run([git, *args], cwd=host_repo, env=host_env, timeout=30)
    hg("fsck", "--full", "--strict")
    assert hg("rev-parse", "HEAD").stdout.strip() == head
    assert hg("status", "--porcelain").stdout == ""
    assert hg("show", "HEAD:src/file3.txt").stdout == "changed\n"
    assert os.readlink(host_repo / "link") == "src/file1.txt"
    assert os.stat(host_repo / "src" / "file2.txt").st_mode & 0o111


def test_cp_and_tar_round_trip(fs, fsb_workdir):
    """cp -a into the mount and tar out of it keep data, modes, links, times."""
    src = fsb_workdir / "src"
    src.mkdir()
    for i in range(30):
        (src / f"f{i}").write_bytes(hashlib.sha256(str(i).encode()).digest() * (i * 37 + 1))
    (src / "sub").mkdir()
    (src / "sub" / "deep").write_text("deep\n")
    os.chmod(src / "f3", 0o751)
    os.symlink("f1", src / "ln")
    os.link(src / "f2", src / "hard")
    os.utime(src / "f4", ns=(1_500_000_000_123_456_789, 1_500_000_000_123_456_789))

    helpers.run(["cp", "-a", str(src), str(fs.mnt / "copy")], timeout=30)
    helpers.run(["diff", "-r", "--no-dereference", str(src), str(fs.host / "copy")], timeout=30)
    helpers.run(["diff", "-r", "--no-dereference", str(src), str(fs.mnt / "copy")], timeout=30)
    assert os.stat(fs.host / "copy" / "f3").st_mode & 0o7777 == 0o751
    assert os.stat(fs.host / "copy" / "f4").st_mtime_ns == 1_500_000_000_123_456_789
    assert os.stat(fs.host / "copy" / "hard").st_ino == os.stat(fs.host / "copy" / "f2").st_ino
    assert os.readlink(fs.host / "copy" / "ln") == "f1"

    out = fsb_workdir / "out"
    out.mkdir()
    helpers.run(["tar", "-C", str(fs.mnt), "-cf", str(fsb_workdir / "t.tar"), "copy"], timeout=30)
    helpers.run(["tar", "-C", str(out), "-xf", str(fsb_workdir / "t.tar")], timeout=30)
    helpers.run(["diff", "-r", "--no-dereference", str(src), str(out / "copy")], timeout=30)
    assert os.stat(out / "copy" / "hard").st_ino == os.stat(out / "copy" / "f2").st_ino


SQLITE_WRITER = r"""
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=20, isolation_level=None)
db.execute("PRAGMA journal_mode=" + sys.argv[2])
who = sys.argv[3]
for i in range(100):
    db.execute("BEGIN IMMEDIATE")
    db.execute("INSERT INTO t(who, n) VALUES (?, ?)", (who, i))
    db.execute("COMMIT")
db.close()
print("done")
"""


@pytest.mark.parametrize("journal", ["delete", "wal"])
def test_sqlite_two_writers(fs, journal):
    """SQLite on the mount: two processes write one database concurrently
    (fcntl locks, fsync, journal or WAL with its shared-memory mmap); the
    host copy then passes integrity_check with every row present."""
    import sqlite3
    import subprocess
    path = fs.mnt / "test.db"
    db = sqlite3.connect(path, isolation_level=None)
    mode = db.execute(f"PRAGMA journal_mode={journal}").fetchone()[0]
    assert mode == journal
    db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, who TEXT, n INTEGER)")
    db.close()
    procs = [subprocess.Popen([helpers.PYTHON, "-c", SQLITE_WRITER, str(path), journal, w],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for w in ("a", "b")]
    try:
        outs = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0 and out.strip() == "done", err
    db = sqlite3.connect(path)
    if journal == "wal":
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert db.execute("SELECT who, count(*) FROM t GROUP BY who").fetchall() == [("a", 100), ("b", 100)]
    db.close()
    # The host copy, read directly (no -wal left after the checkpoint and close).
    host = sqlite3.connect(f"file:{fs.host / 'test.db'}?mode=ro", uri=True)
    try:
        assert host.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert host.execute("SELECT count(*) FROM t").fetchone()[0] == 200
    finally:
        host.close()
