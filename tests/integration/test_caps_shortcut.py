"""
test_caps_shortcut.py - the relay answers the guest kernel's GETXATTR of
security.capability for files the session just created
(src/mount/caps_shortcut.h): an untar then sends none to the host, and
a capability set since (on the host, by another guest) is seen again.
"""

import os
import struct

import pytest

import helpers

EXPORT = "test"
GETXATTR = "FUSE_GETXATTR"
# struct vfs_cap_data, revision 2 (linux/capability.h): cap_net_raw (13)
# permitted and effective
CAP_NET_RAW = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)


@pytest.fixture
def daemon(export_dir, daemon_factory):
    return daemon_factory([f"{EXPORT}={export_dir},cache=coherent"], log_level="debug")


def extract(d, n=20):
    """What tar does to each file: create, write, chown, chmod, utime."""
    for i in range(n):
        p = os.path.join(d, f"f{i}")
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, b"contents %d\n" % i)
        os.fchown(fd, 0, 0)
        os.fchmod(fd, 0o644)
        os.close(fd)
        os.utime(p, (1, 1))


@pytest.mark.parametrize("mode", ["auto", "host"])
def test_extracting_files_asks_the_host_no_capability_question(daemon, mount_factory, mode):
    m = mount_factory(daemon, options=[f"export={EXPORT}", f"caps={mode}"])
    extract(str(m.path))
    if mode == "auto":
        assert helpers.served(daemon, GETXATTR) == 0
    else:
        assert helpers.served(daemon, GETXATTR) >= 20  # the kernel asks before the write and the chown


def test_a_capability_set_on_the_host_since_is_seen(daemon, mount_factory, export_dir):
    m = mount_factory(daemon, options=[f"export={EXPORT}"])
    extract(str(m.path), n=1)
    with pytest.raises(OSError) as e:
        os.getxattr(m.path / "f0", "security.capability")
    assert e.value.errno == 61  # ENODATA, from the relay
    os.setxattr(export_dir / "f0", "security.capability", CAP_NET_RAW)

    def seen():
        try:
            return os.getxattr(m.path / "f0", "security.capability") == CAP_NET_RAW
        except OSError:
            return False
    helpers.poll_until(seen, timeout=5, what="the host's capability in the guest")
    # and a write drops it, as on a local disk
    with open(m.path / "f0", "ab") as f:
        f.write(b"more")
    assert "security.capability" not in os.listxattr(export_dir / "f0")


def test_a_capability_set_through_the_mount_is_seen(export_dir, daemon_factory, mount_factory):
    # xattr=map: the guest's own capabilities, kept under another name on
    # the host (a guest may not give host files capabilities)
    d = daemon_factory([f"{EXPORT}={export_dir},cache=coherent,xattr=map"])
    m = mount_factory(d, options=[f"export={EXPORT}"])
    extract(str(m.path), n=1)
    os.setxattr(m.path / "f0", "security.capability", CAP_NET_RAW)
    assert os.getxattr(m.path / "f0", "security.capability") == CAP_NET_RAW
