"""
vmguest.py - run a QEMU test guest and the host daemons it talks to.

  Guest         one qemu-system-x86_64 run: software emulation (-accel tcg:
                the machines' /dev/kvm hangs stock kernels), guest RAM in a
                shared memfd (vhost-user needs it), Debian's kernel, the
                initramfs of initramfs.py with one /test.sh, vhost-user-fs
                and virtio-serial devices.  Serial port 0 is the console
                (console.log); serial port 1 carries the results
                (results.log), so kernel messages never mix into them.
  VirtiofsDaemon  a vhost-user-fs backend on a Unix socket: fsbridged or the
                legacy C virtiofsd of qemu-system-common, same options.
  Results       the marker lines of results.log, per boot.

The script protocol (PRELUDE is put in front of every /test.sh):

  @@FSB boot ID           /init, once per boot (ID: the kernel's boot_id)
  @@FSB begin NAME        `section NAME CMD...`: CMD's output follows,
  @@FSB end NAME rc=N     then its exit status
  @@FSB mark NAME         `mark NAME`: a point the harness can wait for
  @@FSB done rc=N         /init, after /test.sh returned (then poweroff)

Nothing here waits without a deadline.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import initramfs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
import helpers  # noqa: E402  (unix_socket_listening, shared with the integration tests)

QEMU = "qemu-system-x86_64"
LEGACY_VIRTIOFSD = "/usr/lib/qemu/virtiofsd"

PRELUDE = r"""
section() {
    _name=$1; shift
    echo "@@FSB begin $_name"
    "$@"
    _rc=$?
    echo "@@FSB end $_name rc=$_rc"
    return $_rc
}
mark() { echo "@@FSB mark $1"; }
"""

_MARKER = re.compile(r"^@@FSB (boot|begin|end|mark|done)(?: (?!rc=)(\S+))?(?: rc=(-?\d+))?\s*$")


# --------------------------------------------------------------------------
# results


class Boot:
    """What one boot of the guest reported."""

    def __init__(self, boot_id):
        self.boot_id = boot_id
        self.sections = {}      # name -> output text
        self.rcs = {}           # name -> exit status
        self.marks = []
        self.done_rc = None     # /test.sh's exit status, None if it never ended


class Results:
    def __init__(self, text):
        self.text = text
        self.boots = []
        current = None          # name of the open section
        lines = []
        for line in text.splitlines():
            line = line.rstrip("\r")
            m = _MARKER.match(line)
            if not m:
                if current is not None:
                    lines.append(line)
                continue
            kind, name, rc = m.groups()
            if kind == "boot":
                self.boots.append(Boot(name))
                current = None
                continue
            if not self.boots:
                self.boots.append(Boot(None))
            boot = self.boots[-1]
            if kind == "begin":
                current, lines = name, []
            elif kind == "end" and name == current:
                boot.sections[name] = "\n".join(lines) + "\n"
                boot.rcs[name] = int(rc)
                current = None
            elif kind == "mark":
                boot.marks.append(name)
            elif kind == "done":
                boot.done_rc = int(rc)

    @property
    def last(self):
        return self.boots[-1] if self.boots else Boot(None)


# --------------------------------------------------------------------------
# the guest


class GuestTimeout(Exception):
    pass


class Guest:
    """One QEMU process.  Configure with add_*(), then start() and wait()."""

    def __init__(self, workdir, kernel_dir, base_initrd, script, *, name="guest",
                 mem_mb=512, smp=2, reboot=False, timeout=180):
        self.workdir = Path(workdir)
        self.kernel_dir = Path(kernel_dir)
        self.base_initrd = base_initrd
        self.script = script
        self.name = name
        self.mem_mb = mem_mb
        self.smp = smp
        self.reboot = reboot
        self.timeout = timeout
        self.devices = []
        self.console_path = self.workdir / f"{name}-console.log"
        self.results_path = self.workdir / f"{name}-results.log"
        self.stderr_path = self.workdir / f"{name}-qemu.log"
        self.initrd_path = self.workdir / f"{name}-initrd.img"
        self.proc = None
        self.started = None

    def add_virtiofs(self, socket, tag, *, queue_size=1024, num_request_queues=1):
        n = len(self.devices)
        self.devices += ["-chardev", f"socket,id=vfs{n},path={socket}",
                         "-device", f"vhost-user-fs-pci,chardev=vfs{n},tag={tag},"
                                    f"queue-size={queue_size},"
                                    f"num-request-queues={num_request_queues}"]

    def add_serial_port(self, socket, name, *, server=False, reconnect=None):
        """A virtio-serial port named `name` whose host end is a Unix socket
        (QEMU connects to it unless server=True)."""
        n = len(self.devices)
        chardev = f"socket,id=ser{n},path={socket}"
        chardev += ",server=on,wait=off" if server else ",server=off"
        if reconnect is not None:
            chardev += f",reconnect={reconnect}"
        if not any(d == "virtio-serial-pci" for d in self.devices):
            self.devices += ["-device", "virtio-serial-pci"]
        self.devices += ["-chardev", chardev,
                         "-device", f"virtserialport,chardev=ser{n},name={name}"]

    def argv(self):
        argv = [QEMU, "-accel", "tcg", "-m", f"{self.mem_mb}M", "-smp", str(self.smp),
                "-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none",
                "-object", f"memory-backend-memfd,id=mem,size={self.mem_mb}M,share=on",
                "-machine", "pc,memory-backend=mem",
                "-kernel", str(self.kernel_dir / "vmlinuz"),
                "-initrd", str(self.initrd_path),
                "-append", "console=ttyS0 panic=-1 loglevel=4 rdinit=/init",
                "-serial", f"file:{self.console_path}",
                "-serial", f"file:{self.results_path}"]
        if not self.reboot:
            argv.append("-no-reboot")
        return argv + self.devices

    def start(self):
        initramfs.write_initrd(self.initrd_path, self.base_initrd, guest_script(self.script))
        argv = self.argv()
        (self.workdir / f"{self.name}-argv.txt").write_text(" ".join(argv) + "\n")
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err,
                                         stderr=err, start_new_session=True)
        self.started = time.monotonic()
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def remaining(self):
        return max(0.0, self.timeout - (time.monotonic() - self.started))

    def wait(self, watch=()):
        """Wait for QEMU to exit (the guest powers off); returns its exit
        status.  On timeout, or when a host daemon of `watch` dies first (the
        guest would wait for it forever), kill QEMU and raise GuestTimeout."""
        while True:
            try:
                return self.proc.wait(timeout=min(0.2, self.remaining()))
            except subprocess.TimeoutExpired:
                pass
            dead = [d for d in watch if not d.alive()]
            if dead:
                # A backend also exits when a powered-off guest's QEMU hangs
                # up, a moment before QEMU itself is gone.
                try:
                    return self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            if dead or not self.remaining():
                self.kill()
                why = (f"{dead[0].kind} exited {dead[0].proc.returncode} while the guest "
                       f"used it\n{dead[0].log()}" if dead else
                       f"the guest ran over {self.timeout:.0f} s")
                raise GuestTimeout(f"{why} (QEMU killed)\n{self.diagnostics()}")

    def wait_mark(self, mark, timeout=None):
        """Wait until the guest reports `mark` NAME; returns the Results."""
        deadline = time.monotonic() + (self.remaining() if timeout is None else timeout)
        while True:
            res = self.results()
            if any(mark in b.marks for b in res.boots):
                return res
            if not self.alive():
                raise GuestTimeout(f"QEMU exited before mark {mark}\n{self.diagnostics()}")
            if time.monotonic() > deadline:
                raise GuestTimeout(f"no mark {mark} from the guest\n{self.diagnostics()}")
            time.sleep(0.1)

    def kill(self, sig=signal.SIGKILL):
        if self.alive():
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def results(self):
        return Results(_read(self.results_path))

    def console(self):
        return _read(self.console_path)

    def diagnostics(self, chars=3000):
        parts = [("QEMU stderr", _read(self.stderr_path)),
                 ("guest console", self.console()),
                 ("results port", _read(self.results_path))]
        return "".join(f"---- {what} (last {chars} chars) ----\n{text[-chars:].rstrip()}\n"
                       for what, text in parts)


def guest_script(body):
    """/test.sh: the prelude's shell functions, then `body`."""
    return "#!/bin/sh\n" + PRELUDE + body


def _read(path):
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


# --------------------------------------------------------------------------
# host daemons


class HostDaemon:
    """A host process listening on a Unix socket that QEMU connects to.
    Subclasses give argv()."""

    kind = "daemon"

    def __init__(self, socket, log_path):
        self.socket = Path(socket)
        self.log_path = Path(log_path)
        self.proc = None

    def argv(self):
        raise NotImplementedError

    def start(self, timeout=10.0):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not helpers.unix_socket_listening(self.socket):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited {self.proc.returncode} before "
                                   f"listening\nargv: {self.argv()}\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.kind} not listening on {self.socket} after "
                                   f"{timeout:.0f} s\n{self.log()}")
            time.sleep(0.02)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout=10.0):
        """The exit status once it exits by itself; None if it did not."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=10.0):
        """SIGTERM, then SIGKILL after `timeout`; returns the exit status."""
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode if self.proc else None

    def log_text(self):
        return _read(self.log_path)

    def log(self, chars=3000):
        return f"---- {self.kind} log ----\n{self.log_text()[-chars:]}"


class VirtiofsDaemon(HostDaemon):
    """A vhost-user-fs backend serving `shared_dir` on `socket`.

    kind "fsbridged": fsbridged --socket-path=.. --shared-dir=.. --cache=..
    --xattr --xattr-map (guest trusted.*/security.* kept as user.fsbridge.*:
    the conformance program's trusted_xattrs check runs on virtio-fs too)
    kind "virtiofsd": the legacy C virtiofsd, -o source=..,cache=..
    Both serve one frontend and exit when it disconnects.
    """

    # The legacy daemon's names of the cache modes (it has no "metadata").
    LEGACY_CACHE = {"never": "none", "auto": "auto", "always": "always"}

    def __init__(self, kind, binary, shared_dir, socket, cache, log_path, extra=()):
        super().__init__(socket, log_path)
        self.kind = kind
        self.binary = str(binary)
        self.shared_dir = Path(shared_dir)
        self.cache = cache
        self.extra = list(extra)

    def argv(self):
        if self.kind == "virtiofsd":
            return [self.binary, f"--socket-path={self.socket}",
                    "-o", f"source={self.shared_dir}",
                    "-o", f"cache={self.LEGACY_CACHE[self.cache]}",
                    "-o", "xattr", *self.extra]
        return [self.binary, f"--socket-path={self.socket}",
                f"--shared-dir={self.shared_dir}", f"--cache={self.cache}",
                "--xattr", "--xattr-map", *self.extra]

    @classmethod
    def supports(cls, kind, cache):
        return kind != "virtiofsd" or cache in cls.LEGACY_CACHE


class StreamDaemon(HostDaemon):
    """fsbridged serving one export to stream sessions on a Unix socket
    (here: the host end of a virtio-serial port)."""

    kind = "fsbridged (stream)"

    def __init__(self, binary, export_dir, socket, cache, log_path, name="test"):
        super().__init__(socket, log_path)
        self.binary = str(binary)
        self.export = f"{name}={export_dir},cache={cache}"

    def argv(self):
        return [self.binary, "--export", self.export, "--listen", f"unix:{self.socket}",
                "--log-level", "info"]


def fsbridged_has_vhost_user(binary):
    """True when this fsbridged is a vhost-user backend: it answers
    --print-capabilities with {"type": "fs", ...}."""
    try:
        r = subprocess.run([str(binary), "--print-capabilities"], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True, timeout=10)
        return r.returncode == 0 and json.loads(r.stdout).get("type") == "fs"
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return False


def processes_using(path):
    """[(pid, comm, what)] of processes with an fd, cwd or root below `path`."""
    prefix = os.path.realpath(path)
    users = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        links = []
        try:
            links = [os.path.join(f"/proc/{pid}/fd", fd) for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            pass
        for link in links + [f"/proc/{pid}/cwd", f"/proc/{pid}/root"]:
            try:
                target = os.readlink(link)
            except OSError:
                continue
            if target == prefix or target.startswith(prefix + "/"):
                try:
                    comm = Path(f"/proc/{pid}/comm").read_text().strip()
                except OSError:
                    comm = "?"
                users.append((int(pid), comm, f"{link} -> {target}"))
    return users


def have_qemu():
    return shutil.which(QEMU) is not None
