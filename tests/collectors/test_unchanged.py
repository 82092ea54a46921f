"""Collectors that reuse what they built from unchanged input: the reuse itself, and that a
collector reusing its output still reports exactly what a fresh one reads after a change."""

from __future__ import annotations

import operator
import shutil
from pathlib import Path

import pytest

from agent.agent import build_collector
from agent.collectors.common import Singles, Unchanged
from agent.config import Config
from tests.golden import FIXTURES


def test_unchanged_builds_again_only_when_the_input_differs() -> None:
    built: list[bytes] = []
    memo: Unchanged[list[bytes]] = Unchanged()

    def build(raw: bytes) -> list[bytes]:
        built.append(raw)
        return [raw]

    first = memo.get(b"1", lambda: build(b"1"))
    assert memo.get(b"1", lambda: build(b"1")) is first
    assert memo.get(b"2", lambda: build(b"2")) == [b"2"]
    assert built == [b"1", b"2"]


# (collector, fixture tree, file under the tree to change, bytes in it, replacement): the
# change must alter the collector's output.
CHANGES: list[tuple[str, str, str, bytes, bytes]] = [
    ("bcache", "bcache", "sys/fs/bcache/deaddd54-c735-46d5-868e-f331c5fd7c74/cache0/written",
     b"0", b"5"),
    ("bonding", "bonding", "sys/class/net/int/lower_eth5/bonding_slave/mii_status", b"down",
     b"up"),
    ("btrfs", "btrfs", "sys/fs/btrfs/0abb23a9-579b-43e6-ad30-227ef47fcb9d/commit_stats",
     b"commits 258051", b"commits 258052"),
    ("conntrack", "conntrack", "proc/sys/net/netfilter/nf_conntrack_count", b"1873", b"1874"),
    ("conntrack", "conntrack", "proc/net/stat/nf_conntrack", b"0000001a", b"0000001b"),
    ("cpufreq", "cpufreq", "sys/devices/system/cpu/cpu1/cpufreq/scaling_cur_freq", b"1699981",
     b"1699982"),
    ("diskstats", "diskstats", "proc/diskstats", b"sda 1201554", b"sda 1201555"),
    # udev replaces a device's database file on every event: a new inode and stamp.
    ("diskstats", "diskstats", "udev/b8:0", b"ID_MODEL=Samsung_SSD_860_EVO_500GB",
     b"ID_MODEL=Samsung_SSD_870_EVO_1TB"),
    ("dmmultipath", "dmmultipath", "sys/block/sdc/device/state", b"running", b"offline"),
    ("edac", "edac", "sys/devices/system/edac/mc/mc0/ce_count", b"1", b"2"),
    ("entropy", "entropy", "proc/sys/kernel/random/entropy_avail", b"3412", b"3411"),
    ("filefd", "system", "proc/sys/fs/file-nr", b"10432", b"10433"),
    ("fibrechannel", "fibrechannel", "sys/class/fc_host/host0/statistics/rx_frames", b"0x3",
     b"0x4"),
    ("hwmon", "hwmon", "sys/devices/platform/coretemp.0/hwmon/hwmon0/temp1_input", b"55000",
     b"56000"),
    ("infiniband", "infiniband", "sys/class/infiniband/mlx4_0/ports/1/counters/port_rcv_data",
     b"4631917", b"4631918"),
    ("ipvs", "ipvs", "proc/net/ip_vs_stats", b" 16AA370 E33656E5", b" 16AA371 E33656E5"),
    ("loadavg", "load", "proc/loadavg", b"1.37", b"1.38"),
    ("mdadm", "mdadm", "sys/block/md0/md/degraded", b"0", b"1"),
    ("meminfo", "meminfo", "proc/meminfo", b"MemFree:         1853516",
     b"MemFree:         1853517"),
    ("netstat", "netstat", "proc/net/snmp", b"Ip: 1 64", b"Ip: 2 64"),
    ("netclass", "netclass", "sys/class/net/eth0/mtu", b"9000", b"1500"),
    ("nfs", "nfs", "proc/net/rpc/nfs", b"rpc 1223890122", b"rpc 1223890123"),
    ("nfsd", "nfsd", "proc/net/rpc/nfsd", b"th 8 0", b"th 9 0"),
    ("nvme", "nvme", "sys/class/nvme/nvme0/nvme0c0n1/nuse", b"488281250", b"488281251"),
    ("powersupplyclass", "powersupplyclass", "sys/class/power_supply/BAT0/capacity", b"81",
     b"80"),
    ("rapl", "rapl", "sys/devices/virtual/powercap/intel-rapl/intel-rapl:0/energy_uj",
     b"240422366267", b"240422366268"),
    ("sockstat", "sockstat", "proc/net/sockstat", b"TCP: inuse 87", b"TCP: inuse 88"),
    ("sockstat", "sockstat", "proc/net/sockstat6", b"TCP6: inuse 23", b"TCP6: inuse 24"),
    ("stat", "system", "proc/stat", b"procs_running 3", b"procs_running 4"),
    ("thermal_zone", "thermal_zone", "sys/class/thermal/thermal_zone0/temp", b"12376",
     b"12377"),
    ("vmstat", "vmstat", "proc/vmstat", b"pgfault 9876543210", b"pgfault 9876543211"),
    ("watchdog", "watchdog", "sys/class/watchdog/watchdog0/timeleft", b"300", b"299"),
    ("xfs", "xfs", "sys/fs/xfs/sda1/stats/stats", b"rw 28 2", b"rw 29 2"),
    ("zfs", "zfs", "proc/spl/kstat/zfs/arcstats", b"4    8772612", b"4    8772613"),
]


def _config(root: Path) -> Config:
    return Config.model_validate({"paths": {"procfs": root / "proc", "sysfs": root / "sys",
                                            "rootfs": "/", "udev_data": root / "udev"}})


@pytest.mark.parametrize(("name", "tree", "path", "old", "new"), CHANGES,
                         ids=[c[0] for c in CHANGES])
def test_reused_output_follows_a_changed_file(tmp_path: Path, name: str, tree: str,
                                              path: str, old: bytes, new: bytes) -> None:
    shutil.copytree(FIXTURES / tree, tmp_path, dirs_exist_ok=True, symlinks=True)
    for part in ("proc", "sys", "udev"):
        (tmp_path / part).mkdir(exist_ok=True)
    collector = build_collector(name, _config(tmp_path))
    before = collector.collect()
    assert before, f"{name} reads nothing from its fixture tree"
    again = collector.collect()
    # Unchanged input: the very same families, not rebuilt ones.
    assert len(again) == len(before) and all(map(operator.is_, again, before))
    changed = tmp_path / path
    content = changed.read_bytes()
    assert old in content, f"{old!r} not in {path}"
    changed.write_bytes(content.replace(old, new, 1))
    after = collector.collect()
    assert after != before, f"changing {path} did not change {name}'s output"
    assert after == build_collector(name, _config(tmp_path)).collect()


def test_singles_hand_out_a_family_again_only_for_the_very_same_value() -> None:
    singles = Singles()
    first = singles.get("node_a", "A.", "gauge", 1.0)
    zero = singles.get("node_z", "Z.", "counter", 0.0)
    assert (zero.name, zero.samples[0].name) == ("node_z", "node_z")
    singles.done()
    assert singles.get("node_a", "A.", "gauge", 1.0) is first
    assert singles.get("node_z", "Z.", "counter", -0.0) is not zero  # written as -0
    singles.done()
    one = singles.get("node_a", "A.", "gauge", 1)
    assert one is not first  # written as 1, not 1.0
    singles.done()
    assert singles.get("node_a", "A.", "gauge", 1) is one
    singles.done()
    singles.done()  # node_a not asked for in a collection: forgotten
    assert singles.get("node_a", "A.", "gauge", 1) is not one
    nan = singles.get("node_n", "N.", "gauge", float("nan"))
    singles.done()
    assert singles.get("node_n", "N.", "gauge", float("nan")) is not nan
