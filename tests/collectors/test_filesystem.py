from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric

from agent.collectors.catalog import FilesystemSettings
from agent.collectors.filesystem import (
    WORKERS,
    FilesystemCollector,
    StatvfsFunc,
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


def test_mounts_excludes_fs_types_and_mount_points_and_duplicates() -> None:
    mounts = collector().mounts()
    assert [m.mountpoint for m in mounts] == [
        "/run", "/", "/run/lock", "/boot", "/boot/efi", "/srv/media library", "/mnt/backup",
        "/home/shared", "/run/user/1000", "/run/user/1000/gvfs"]


def test_strip_rootfs() -> None:
    assert strip_rootfs("/boot", Path("/")) == "/boot"
    assert strip_rootfs("/host", Path("/host")) == "/"
    assert strip_rootfs("/host/boot", Path("/host")) == "/boot"
    assert strip_rootfs("/hostdata", Path("/host")) == "/hostdata"
    assert strip_rootfs("/", Path("/host")) == "/"


def test_rootfs_labels_strip_prefix_and_statvfs_sees_full_path(tmp_path: Path) -> None:
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "mounts").write_text(
        "overlay / overlay rw 0 0\n"
        "/dev/sda2 /host ext4 rw 0 0\n"
        "/dev/sda1 /host/boot ext4 ro 0 0\n"
        "/dev/sdb1 /host/proc/x ext4 rw 0 0\n")
    called: list[str] = []

    def statvfs(path: str) -> os.statvfs_result:
        called.append(path)
        return st(100, 50, 40, 10, 5)

    families = collector(statvfs, procfs=tmp_path, rootfs="/host").collect()
    assert sorted(called) == ["/host", "/host/boot"]
    assert values(families, "node_filesystem_size_bytes") == {"/": 409600, "/boot": 409600}
    assert values(families, "node_filesystem_readonly") == {"/": 0, "/boot": 1}


def test_falls_back_to_self_mounts_without_pid_1(tmp_path: Path) -> None:
    (tmp_path / "mounts").write_text("/dev/sda1 /data ext4 rw 0 0\n")
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
    assert values(families, "node_filesystem_readonly")["/mnt/backup"] == 1
    assert size["/boot"] == 249830 * 1024
    errors = values(families, "node_filesystem_device_error")
    assert errors["/run/user/1000/gvfs"] == 1
    assert sum(errors.values()) == 1
    assert "/run/user/1000/gvfs" not in size
    labels = {tuple(sorted(s.labels.items())) for f in families for s in f.samples}
    assert (("device", "/dev/sdb1"), ("fstype", "ext4"), ("mountpoint", "/srv/media library")) \
        in labels
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
    hung = len(c.mounts()) - 1
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
