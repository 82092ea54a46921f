from __future__ import annotations

from pathlib import Path

from prometheus_client.metrics_core import Metric

from agent.collectors.btrfs import (
    BtrfsCollector,
    DeviceStats,
    btrfs_families,
    btrfs_mounts,
    ioctl_stats,
    read_filesystems,
)
from tests.golden import FIXTURES, assert_golden

BTRFS = FIXTURES / "btrfs"
A = "0abb23a9-579b-43e6-ad30-227ef47fcb9d"
B = "7f07c59f-6136-449c-ab87-e1cf2328731b"


def series(families: list[Metric]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in families for s in f.samples}


def value(families: list[Metric], name: str, **labels: str) -> float:
    return series(families)[(name, tuple(sorted(labels.items())))]


def test_sysfs_values_match_node_exporter_tests(tmp_path: Path) -> None:
    # No mount table: the per-device series come from sysfs, as node_exporter's fallback.
    families = BtrfsCollector(tmp_path, BTRFS / "sys", tmp_path).collect()
    assert value(families, "node_btrfs_info", uuid=A, label="fixture") == 1
    assert value(families, "node_btrfs_info", uuid=B, label="") == 1
    assert value(families, "node_btrfs_global_rsv_size_bytes", uuid=A) == 16777216
    assert value(families, "node_btrfs_commits_total", uuid=A) == 258051
    assert value(families, "node_btrfs_last_commit_seconds", uuid=A) == 1.0
    assert value(families, "node_btrfs_max_commit_seconds", uuid=A) == 51.462
    assert value(families, "node_btrfs_commit_seconds_total", uuid=A) == 47836.090
    assert value(families, "node_btrfs_commits_total", uuid=B) == 0  # no commit_stats
    assert value(families, "node_btrfs_used_bytes", uuid=A, block_group_type="data",
                 mode="raid0") == 808189952
    assert value(families, "node_btrfs_size_bytes", uuid=A, block_group_type="metadata",
                 mode="raid1") == 1073741824
    assert value(families, "node_btrfs_allocation_ratio", uuid=A, block_group_type="system",
                 mode="raid1") == 2
    assert value(families, "node_btrfs_allocation_ratio", uuid=B, block_group_type="data",
                 mode="raid5") == 1.3333333333333333
    assert value(families, "node_btrfs_allocation_ratio", uuid=B, block_group_type="metadata",
                 mode="raid6") == 2
    assert value(families, "node_btrfs_reserved_bytes", uuid=B, block_group_type="system") == 0
    assert value(families, "node_btrfs_device_size_bytes", uuid=B, device="loop24") == 10 * 2**30
    assert len([k for k in series(families) if k[0] == "node_btrfs_device_size_bytes"]) == 6
    assert_golden(families, "btrfs")


def test_ioctl_devices_replace_the_sysfs_sizes() -> None:
    devices = [DeviceStats("/dev/loop25", "4e5e1e2ba9b24b5cbd8bbd9f3b8f2c11", 2147483648,
                           10737418240, (1, 2, 3, 4, 5))]
    families = btrfs_families(read_filesystems(BTRFS / "sys"), {A.replace("-", ""): devices})
    labels = {"uuid": A, "device": "loop25", "btrfs_dev_uuid": devices[0].uuid}
    assert value(families, "node_btrfs_device_size_bytes", **labels) == 10737418240
    assert value(families, "node_btrfs_device_unused_bytes", **labels) == 8589934592
    assert value(families, "node_btrfs_device_errors_total", type="corruption", **labels) == 4
    assert value(families, "node_btrfs_device_errors_total", type="generation", **labels) == 5
    # The other filesystem keeps its sysfs sizes.
    assert value(families, "node_btrfs_device_size_bytes", uuid=B, device="loop22") == 10 * 2**30
    assert_golden(families, "btrfs_ioctl")


def test_mounts_and_a_mount_point_that_is_not_btrfs(tmp_path: Path) -> None:
    mountinfo = ("29 1 0:26 / / rw,relatime shared:1 - btrfs /dev/sda2 rw,space_cache=v2\n"
                 "30 29 0:26 /@home /home\\040dir rw - btrfs /dev/sda2 rw\n"
                 "31 29 0:5 / /dev rw - devtmpfs udev rw\n")
    assert btrfs_mounts(mountinfo) == [("/dev/sda2", "/"), ("/dev/sda2", "/home dir")]
    # The ioctl fails on a filesystem that is not btrfs: no device stats, no error.
    assert ioctl_stats([("/dev/sdz", "/")], tmp_path) == {}


def test_no_btrfs_means_no_series(tmp_path: Path) -> None:
    (tmp_path / "fs" / "btrfs" / "features").mkdir(parents=True)
    assert BtrfsCollector(tmp_path, tmp_path, tmp_path).collect() == []
