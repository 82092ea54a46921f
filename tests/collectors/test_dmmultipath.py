from __future__ import annotations

import errno
import shutil
from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric

from agent.collectors import dmmultipath
from agent.collectors.dmmultipath import DmMultipathCollector
from tests.golden import FIXTURES, assert_golden

SYS = FIXTURES / "dmmultipath" / "sys"


def series(families: list[Metric]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in families for s in f.samples}


def test_fixture_host() -> None:
    families = DmMultipathCollector(SYS).collect()
    got = series(families)
    info = {dict(k[1])["sysfs_name"]: dict(k[1]) for k in got
            if k[0] == "node_dmmultipath_device_info"}
    # Only maps whose dm/uuid starts with mpath-: not the LVM volume dm-1, not dm-5.
    assert sorted(info) == ["dm-0", "dm-2", "dm-3", "dm-4"]
    assert info["dm-0"] == {"device": "mpatha", "sysfs_name": "dm-0",
                            "uuid": "mpath-3600a098038304437415d4b6a59684a52"}

    def value(name: str, sysfs_name: str) -> float:
        device = info[sysfs_name]["device"]
        return got[(f"node_dmmultipath_{name}",
                    (("device", device), ("sysfs_name", sysfs_name)))]

    assert value("device_size_bytes", "dm-0") == 209715200 * 512
    assert value("device_active", "dm-0") == 1 and value("device_active", "dm-2") == 0
    assert [value(n, "dm-2") for n in ("device_paths", "device_paths_active",
                                       "device_paths_failed")] == [3, 1, 2]
    # NVMe: live is active, connecting is not.
    assert [value(n, "dm-3") for n in ("device_paths", "device_paths_active",
                                       "device_paths_failed")] == [2, 1, 1]
    assert [value(n, "dm-4") for n in ("device_paths", "device_paths_active",
                                       "device_paths_failed")] == [0, 0, 0]
    states = {(dict(k[1])["path"], dict(k[1])["state"]) for k in got
              if k[0] == "node_dmmultipath_path_state"}
    assert ("sde", "transport-offline") in states and ("nvme0n1", "live") in states
    assert len(states) == 7
    assert_golden(families, "dmmultipath")


def test_missing_attribute_is_no_data(tmp_path: Path) -> None:
    sys = tmp_path / "sys"
    shutil.copytree(SYS, sys)
    (sys / "block/sdd/device/state").unlink()
    assert DmMultipathCollector(sys).collect() == []


def test_bad_value_fails(tmp_path: Path) -> None:
    sys = tmp_path / "sys"
    shutil.copytree(SYS, sys)
    (sys / "block/dm-0/dm/suspended").write_text("no\n")
    with pytest.raises(ValueError, match="suspended"):
        DmMultipathCollector(sys).collect()


def test_unreadable_is_no_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sys = tmp_path / "sys"
    shutil.copytree(SYS, sys)
    unreadable = sys / "block/dm-0/dm/name"
    unreadable.chmod(0)
    # root reads the file whatever its mode (as the suite runs in CI): refuse it at the read
    real_read = dmmultipath.read_attribute_bytes

    def read(path: Path) -> bytes:
        if Path(path) == unreadable:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_read(path)

    monkeypatch.setattr(dmmultipath, "read_attribute_bytes", read)
    assert DmMultipathCollector(sys).collect() == []


def test_no_block_devices_is_no_data(tmp_path: Path) -> None:
    assert DmMultipathCollector(tmp_path).collect() == []
