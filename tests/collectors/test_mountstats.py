from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric

from agent.collectors.mountstats import (
    MountstatsCollector,
    mountstats_families,
    parse_mountinfo_addresses,
    parse_mountstats,
)
from tests.golden import FIXTURES, assert_golden

MOUNTSTATS = FIXTURES / "mountstats"


def series(families: list[Metric], name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {frozenset(s.labels.items()): s.value for f in families for s in f.samples
            if s.name == name}


def test_node_exporter_fixture() -> None:
    families = MountstatsCollector(MOUNTSTATS / "proc").collect()
    info = series(families, "node_mountstats_nfs_mountpoint_info")
    # One info series per (export, protocol, address, mount point); the third NFS mount has
    # no mountinfo line at its position, so no address.
    assert sorted((dict(k)["mountpoint"], dict(k)["protocol"], dict(k)["mountaddr"])
                  for k in info) == [("/mnt/nfs/test", "tcp", "192.168.1.1"),
                                     ("/mnt/nfs/test-dupe", "tcp", "192.168.1.1"),
                                     ("/mnt/nfs/test-dupe", "udp", "")]
    # The second nfs4 mount repeats the first's export: its statistics are not exported again.
    ages = series(families, "node_mountstats_nfs_age_seconds_total")
    assert sorted(dict(k)["protocol"] for k in ages) == ["tcp", "udp"]
    assert set(ages.values()) == {13968}
    # Both nconnect transports, numbered in file order.
    sends = series(families, "node_mountstats_nfs_transport_sends_total")
    tcp = {dict(k)["transport"]: v for k, v in sends.items() if dict(k)["protocol"] == "tcp"}
    assert tcp == {"0": 6428, "1": 2826}
    # UDP has no connection counters: the values shift past three zeros.
    idle = series(families, "node_mountstats_nfs_transport_idle_time_seconds")
    udp = {k: v for k, v in idle.items() if dict(k)["protocol"] == "udp"}
    assert list(udp.values()) == [0]
    queue = series(families, "node_mountstats_nfs_operations_queue_time_seconds_total")
    access = [v for k, v in queue.items() if dict(k)["operation"] == "ACCESS"]
    # 18446743919241604546 ms reduced modulo 2^53 before the conversion, as node_exporter.
    assert access == [(18446743919241604546 % (1 << 53)) / 1000]
    assert_golden(families, "mountstats")


def test_mounts_without_nfs_statistics_are_no_data() -> None:
    assert MountstatsCollector(MOUNTSTATS / "proc-empty").collect() == []


def test_no_file_is_no_data(tmp_path: Path) -> None:
    assert MountstatsCollector(tmp_path).collect() == []


def test_statistics_version_1_0_and_errors_column() -> None:
    text = ("device srv:/x mounted on /x with fstype nfs statvers=1.0\n"
            "\tage:\t5\n"
            "\txprt:\ttcp 1 2 3 4 5 6 7 8 9 10\n"
            "\tper-op statistics\n"
            "\t     GETATTR: 1 2 3 4 5 6 7 8 9\n")
    [mount] = parse_mountstats(text)
    assert mount.stats is not None
    [transport] = mount.stats.transports
    # Version 1.0 has no slot or queue columns: they read as zero.
    assert transport.values[:13] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0, 0, 0]
    families = mountstats_families([mount], [])
    errors = series(families, "node_mountstats_nfs_operations_errors_total")
    assert list(errors.values()) == [9]


@pytest.mark.parametrize("text", [
    "device a mounted on /a with fstype ext4 statvers=1.1\n",  # statistics on a non-NFS mount
    "device a mounted at /a with fstype nfs\n",
    "device a:/ mounted on /a with fstype nfs statvers=1.1\n\tbytes:\t1 2 3\n",
    "device a:/ mounted on /a with fstype nfs statvers=1.1\n\tevents:\t1\n",
    "device a:/ mounted on /a with fstype nfs statvers=1.1\n\txprt:\ttcp 1 2 3\n",
    "device a:/ mounted on /a with fstype nfs statvers=1.1\n\txprt:\tsctp 1 2 3\n",
    "device a:/ mounted on /a with fstype nfs statvers=2.0\n\txprt:\ttcp 1 2 3\n",
    "device a:/ mounted on /a with fstype nfs statvers=1.1\n\tage:\tx\n",
    "device a:/ mounted on /a with fstype nfs statvers=1.1\n\tper-op statistics\n\tNULL: 1\n",
    "device a:/ mounted on /a with fstype nfs statvers=1.1\n\tper-op statistics\n"
    "\tNULL: 1 2 3 4 5 6 7 -8\n",
])
def test_malformed_file_fails(text: str) -> None:
    with pytest.raises(ValueError, match=r"mountstats|integer|age"):
        parse_mountstats(text)


def test_mountinfo_addresses() -> None:
    text = (MOUNTSTATS / "proc/self/mountinfo").read_text()
    assert parse_mountinfo_addresses(text) == ["", "", "", "192.168.1.1", "192.168.1.1",
                                               "192.168.1.1"]
    with pytest.raises(ValueError, match="separator"):
        parse_mountinfo_addresses("1 2 0:1 / / rw shared:1 x ext4 /dev/sda1 rw extra\n")
