from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics_core import Metric

from agent.collectors.catalog import FilesystemSettings
from agent.collectors.filesystem import (
    WORKERS,
    FilesystemCollector,
    StatvfsFunc,
    errno_text,
    parse_mountinfo,
    parse_mounts,
    strip_rootfs,
)
from tests.golden import FIXTURES, assert_golden

PROC = FIXTURES / "filesystem" / "proc"
DEFAULTS = FilesystemSettings()


def st(blocks: int, bfree: int, bavail: int, files: int, ffree: int,
       bsize: int = 4096) -> os.statvfs_result:
    return os.statvfs_result((bsize, bsize, blocks, bfree, bavail, files, ffree, ffree, 0, 255))


STATS = {
    "/run": st(408037, 407800, 407800, 408037, 407200),
    "/": st(60614208, 31457280, 28370944, 15466496, 14680064),
    "/run/lock": st(1280, 1279, 1279, 408037, 408034),
    "/boot": st(249830, 180000, 166000, 65536, 65200, bsize=1024),
    "/boot/efi": st(130812, 129000, 129000, 0, 0),
    "/srv/media library": st(976754176, 244188544, 195350528, 244195328, 244190000),
    "/mnt/backup": st(488378368, 100000000, 100000000, 195360512, 195000000),
    "/home/shared": st(2147483648, 1073741824, 1073741824, 134217728, 120000000, bsize=1048576),
    "/run/user/1000": st(408036, 408000, 408000, 408036, 408000),
    "/var/log": st(2621440, 1000000, 900000, 655360, 600000),
    "/srv/archive": st(976754176, 244188544, 195350528, 244195328, 244190000),
    "/srv/old": st(1000, 10, 10, 100, 1),
}


def fake_statvfs(path: str) -> os.statvfs_result:
    if path == "/run/user/1000/gvfs":
        raise PermissionError(errno.EACCES, "Permission denied", path)
    return STATS[path]


def collector(statvfs: StatvfsFunc = fake_statvfs, procfs: Path = PROC, rootfs: str = "/",
              timeout: float = 5.0) -> FilesystemCollector:
    return FilesystemCollector(procfs, Path(rootfs), DEFAULTS.mount_points_exclude,
                               DEFAULTS.fs_types_exclude, timeout, statvfs)


def values(families: list[Metric], name: str) -> dict[str, float]:
    """mountpoint label -> value of the sample called name."""
    return {s.labels["mountpoint"]: s.value
            for f in families for s in f.samples if s.name == name}


def test_parse_mounts_decodes_octal_escapes() -> None:
    mounts = parse_mounts("/dev/sdb1 /srv/media\\040library ext4 rw 0 0\n"
                          "/dev/sdb2 /a\\011tab\\134back ext4 ro,noatime 0 0\n"
                          "garbage\n")
    assert [m.mountpoint for m in mounts] == ["/srv/media library", "/a\ttab\\back"]
    assert [m.readonly for m in mounts] == [False, True]


def test_mounts_excludes_fs_types_and_mount_points() -> None:
    mounts = collector().mounts()
    assert [m.mountpoint for m in mounts] == [
        "/run", "/", "/run/lock", "/boot", "/boot/efi", "/srv/media library",
        "/srv/media library", "/mnt/backup", "/home/shared", "/var/log", "/srv/archive",
        "/srv/old", "/run/user/1000", "/run/user/1000/gvfs"]


def test_parse_mountinfo() -> None:
    [mount] = parse_mountinfo(
        "63 28 8:17 / /srv/a\\040b\\011c\\134d rw,noatime shared:34 master:1 - ext4 "
        "/dev/sdb1 rw,errors=remount-ro\n")
    # Only \\040 and \\011 are decoded, as node_exporter.
    assert mount.mountpoint == "/srv/a b\tc\\134d"
    assert (mount.device, mount.fstype, mount.major, mount.minor) == ("/dev/sdb1", "ext4",
                                                                       "8", "17")
    assert not mount.readonly
    for line in ("1 2 8:1 / / rw - ext4 /dev/sda1\n",  # too few fields
                 "1 2 8:1 / / rw shared:1 x ext4 /dev/sda1 rw\n",  # no separator
                 "1 2 8-1 / / rw shared:1 - ext4 /dev/sda1 rw\n"):  # bad device numbers
        with pytest.raises(ValueError, match="mountinfo"):
            parse_mountinfo(line)


@pytest.mark.parametrize(("options", "super_options", "readonly"), [
    ("rw,relatime", "rw", False),
    ("ro,relatime", "rw", True),  # a read-only bind mount
    ("rw,relatime", "ro,seclabel", True),  # a read-only superblock
    ("rw", "rw,emergency_ro,errors=remount-ro", True),  # ext4 after errors=remount-ro fired
    ("rw", "rw,errors=remount-ro", False),
])
def test_readonly(options: str, super_options: str, readonly: bool) -> None:
    [mount] = parse_mountinfo(f"1 2 8:1 / /x {options} - ext4 /dev/sda1 {super_options}\n")
    assert mount.readonly is readonly


def test_errno_text_as_go() -> None:
    assert errno_text(PermissionError(errno.EACCES, "x")) == "permission denied"
    assert errno_text(OSError(errno.ESTALE, "x")) == "stale NFS file handle"
    assert errno_text(OSError(errno.EIO, "x")) == "input/output error"


def test_strip_rootfs() -> None:
    assert strip_rootfs("/boot", Path("/")) == "/boot"
    assert strip_rootfs("/host", Path("/host")) == "/"
    assert strip_rootfs("/host/boot", Path("/host")) == "/boot"
    assert strip_rootfs("/hostdata", Path("/host")) == "data"  # node_exporter's plain strip
    assert strip_rootfs("/", Path("/host")) == "/"


def test_rootfs_labels_strip_prefix_and_statvfs_sees_full_path(tmp_path: Path) -> None:
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "mountinfo").write_text(
        "1 0 0:40 / / rw - overlay overlay rw\n"
        "2 1 8:2 / /host rw - ext4 /dev/sda2 rw\n"
        "3 2 8:1 / /host/boot ro - ext4 /dev/sda1 rw\n"
        "4 2 8:17 / /host/proc/x rw - ext4 /dev/sdb1 rw\n")
    called: list[str] = []

    def statvfs(path: str) -> os.statvfs_result:
        called.append(path)
        return st(100, 50, 40, 10, 5)

    families = collector(statvfs, procfs=tmp_path, rootfs="/host").collect()
    assert sorted(called) == ["/host", "/host/boot"]
    assert values(families, "node_filesystem_size_bytes") == {"/": 409600, "/boot": 409600}
    assert values(families, "node_filesystem_readonly") == {"/": 0, "/boot": 1}


def test_falls_back_to_self_mountinfo_without_pid_1(tmp_path: Path) -> None:
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "mountinfo").write_text("1 0 8:1 / /data rw - ext4 /dev/sda1 rw\n")
    families = collector(lambda path: st(10, 5, 4, 3, 2), procfs=tmp_path).collect()
    assert values(families, "node_filesystem_avail_bytes") == {"/data": 4 * 4096}


def test_values_and_golden() -> None:
    families = collector().collect()
    size = values(families, "node_filesystem_size_bytes")
    assert size["/"] == 60614208 * 4096
    assert size["/home/shared"] == 2147483648 * 1048576
    assert values(families, "node_filesystem_avail_bytes")["/"] == 28370944 * 4096
    assert values(families, "node_filesystem_free_bytes")["/"] == 31457280 * 4096
    assert values(families, "node_filesystem_files_free")["/srv/media library"] == 244190000
    readonly = values(families, "node_filesystem_readonly")
    assert {m for m, v in readonly.items() if v} == {
        "/mnt/backup", "/var/log", "/srv/archive", "/srv/old"}
    assert size["/boot"] == 249830 * 1024
    errors = values(families, "node_filesystem_device_error")
    assert errors["/run/user/1000/gvfs"] == 1
    assert sum(errors.values()) == 1
    assert "/run/user/1000/gvfs" not in size
    # A mount in error keeps its readonly series, and names the error in device_error.
    assert readonly["/run/user/1000/gvfs"] == 0
    gvfs = [s.labels for f in families for s in f.samples
            if s.labels.get("mountpoint") == "/run/user/1000/gvfs"]
    assert {labels["device_error"] for labels in gvfs} == {"permission denied"}
    labels = {tuple(sorted(s.labels.items())) for f in families for s in f.samples
              if s.name == "node_filesystem_size_bytes"}
    assert (("device", "/dev/sdb1"), ("device_error", ""), ("fstype", "ext4"),
            ("mountpoint", "/srv/media library")) in labels
    info = {tuple(sorted(s.labels.items())) for f in families for s in f.samples
            if s.name == "node_filesystem_mount_info"}
    assert (("device", "/dev/sda1"), ("major", "8"), ("minor", "1"), ("mountpoint", "/boot")) \
        in info
    assert not any(dict(i)["mountpoint"] == "/run/user/1000/gvfs" for i in info)
    # The same mount twice is one series.
    assert len([s for f in families for s in f.samples if s.name == "node_filesystem_size_bytes"
                and s.labels["mountpoint"] == "/srv/media library"]) == 1
    assert_golden(families, "filesystem")


@pytest.fixture
def hang() -> Iterator[threading.Event]:
    """Released at the end of the test, so the blocked worker threads can finish."""
    release = threading.Event()
    yield release
    release.set()


def test_hung_mount_does_not_block_others_nor_grow_threads(hang: threading.Event) -> None:
    hung = "/home/shared"

    def statvfs(path: str) -> os.statvfs_result:
        if path == hung:
            hang.wait()
        return fake_statvfs(path)

    timeout = 0.2
    c = collector(statvfs, timeout=timeout)
    threads_before = threading.active_count()
    durations = []
    for _ in range(20):
        start = time.monotonic()
        families = c.collect()
        durations.append(time.monotonic() - start)
        errors = values(families, "node_filesystem_device_error")
        assert errors[hung] == 1
        assert errors["/"] == 0
        assert hung not in values(families, "node_filesystem_size_bytes")
        assert values(families, "node_filesystem_size_bytes")["/"] == 60614208 * 4096
        # The pool's own workers plus one thread held by the hung mount.
        assert threading.active_count() <= threads_before + WORKERS + 1
    assert max(durations) < 5 * timeout
    # Only the first collect waits for the hung call; later ones skip the stuck mount.
    assert sum(durations[1:]) < 5 * timeout

    hang.set()
    deadline = time.monotonic() + 5
    while values(c.collect(), "node_filesystem_device_error")[hung] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert values(c.collect(), "node_filesystem_size_bytes")[hung] == 2147483648 * 1048576


def test_more_hung_mounts_than_workers_still_returns_on_time(hang: threading.Event) -> None:
    def statvfs(path: str) -> os.statvfs_result:
        if path != "/":
            hang.wait()
        return fake_statvfs(path)

    timeout = 0.2
    c = collector(statvfs, timeout=timeout)
    hung = len({m.mountpoint for m in c.mounts()}) - 1
    assert hung > WORKERS, "the fixture must have more hung mounts than workers"
    threads_before = threading.active_count()
    answered = 0
    for _ in range(10):
        all_hung_known = len(c._stuck) == hung
        start = time.monotonic()
        errors = values(c.collect(), "node_filesystem_device_error")
        assert time.monotonic() - start < 5 * timeout
        assert set(errors) == {m.mountpoint for m in c.mounts()}
        if all_hung_known:  # then the healthy mount never waits behind a hung one
            assert errors["/"] == 0.0
            answered += 1
        assert c._pool.pending <= len(c.mounts())
        assert threading.active_count() <= threads_before + WORKERS + hung
    assert answered >= 3


def test_reused_families_follow_mountinfo_and_statvfs(tmp_path: Path) -> None:
    (tmp_path / "1").mkdir()
    mountinfo = tmp_path / "1" / "mountinfo"
    mountinfo.write_bytes((PROC / "1" / "mountinfo").read_bytes())
    answers = dict(STATS)

    def statvfs(path: str) -> os.statvfs_result:
        return answers[path] if path in answers else fake_statvfs(path)

    c = collector(statvfs, procfs=tmp_path)
    before = c.collect()
    assert c.collect() is before  # nothing changed: the same families handed out again
    answers["/srv/old"] = st(1000, 9, 9, 100, 1)
    changed = c.collect()
    assert values(changed, "node_filesystem_free_bytes")["/srv/old"] == 9 * 4096
    assert changed == collector(statvfs, procfs=tmp_path).collect()
    mountinfo.write_bytes(mountinfo.read_bytes().replace(b"emergency_ro,", b""))
    remounted = c.collect()
    assert values(remounted, "node_filesystem_readonly")["/var/log"] == 0.0
    assert remounted == collector(statvfs, procfs=tmp_path).collect()


def test_a_hang_is_laid_on_the_mount_it_is_on_and_the_others_answer(
        hang: threading.Event) -> None:
    calls: list[str] = []

    def statvfs(path: str) -> os.statvfs_result:
        calls.append(path)
        if path == "/boot":
            hang.wait()
        return fake_statvfs(path)

    c = collector(statvfs, timeout=0.2)
    healthy = collector().collect()
    first = c.collect()
    assert set(c._stuck) == {"/boot"}
    errors = values(first, "node_filesystem_device_error")
    assert errors["/boot"] == 1
    assert {m: v for m, v in errors.items() if m != "/boot"} == {
        m: v for m, v in values(healthy, "node_filesystem_device_error").items() if m != "/boot"}
    assert calls.count("/boot") == 1  # asked once, not again while it hangs
    calls.clear()
    assert values(c.collect(), "node_filesystem_device_error")["/boot"] == 1
    assert "/boot" not in calls and len(calls) == len(set(calls))
    hang.set()
    deadline = time.monotonic() + 5
    while c._stuck and time.monotonic() < deadline:
        c.collect()
        time.sleep(0.01)
    assert c.collect() == healthy


def test_one_pool_call_asks_every_mount_in_turn() -> None:
    c = collector()
    submitted: list[object] = []
    submit = c._pool.submit

    def counting(fn: Any, /, *args: Any) -> Any:
        submitted.append(fn)
        return submit(fn, *args)

    c._pool.submit = counting  # type: ignore[method-assign]
    assert c.collect() == collector().collect()
    assert len(submitted) == 1


def test_slow_mounts_each_have_the_whole_timeout() -> None:
    """Mounts asked in turn share one call: two that each answer within the timeout, but not
    both within it one after the other, are both answered, neither marked stuck."""
    slow = {"/boot", "/home/shared"}

    def statvfs(path: str) -> os.statvfs_result:
        if path in slow:
            time.sleep(0.6)
        return fake_statvfs(path)

    c = collector(statvfs, timeout=1.0)
    families = c.collect()
    assert not c._stuck
    sizes = values(families, "node_filesystem_size_bytes")
    assert slow <= set(sizes)
    assert families == collector().collect()
