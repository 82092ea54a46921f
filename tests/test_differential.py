"""Differential checks against the real node_exporter on this machine.

For each hostagent collector, node_exporter runs with only the equivalent collectors. The
series (name + full label set) both expose must be the same, and values must agree: every
sample of ours lies between node_exporter's scrape before ours and its scrape after ours
(so counters are bracketed and constant gauges must be equal), widened only for the gauges
listed in VOLATILE, which the kernel changes from one read to the next.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.agent import build_collector
from agent.collectors.catalog import (
    BY_NAME,
    DiskstatsSettings,
    FilesystemSettings,
    NetstatSettings,
)
from agent.config import Config
from agent.exposition.formats import TEXT, encode

# Series node_exporter adds about itself, not about the host.
NOT_HOST = ("node_scrape_", "node_exporter_", "go_", "process_", "promhttp_", "hostagent_")

# Gauges that legitimately move between two reads a few milliseconds apart: relative slack.
VOLATILE = {
    "node_memory_": 0.05,
    "node_procs_running": 1.0,
    "node_procs_blocked": 1.0,
    "node_filefd_allocated": 0.1,
    "node_filesystem_free_bytes": 0.001,
    "node_filesystem_avail_bytes": 0.001,
    "node_filesystem_files_free": 0.001,
    "node_disk_io_now": 1.0,
    "node_time_seconds": 0.0,
    # Socket counts: node_exporter reads them while its own scrape connection is open (both
    # loopback ends count), and any process on the host opens and closes sockets.
    "node_sockstat_": 1.0,
    "node_netstat_Tcp_CurrEstab": 1.0,
    # The kernel reduces the remaining clock offset every second while NTP/PTP steers it,
    # and kernels before 5.18 change the entropy estimate with every interrupt.
    "node_timex_offset_seconds": 0.01,
    "node_entropy_available_bits": 0.5,
}



def node_exporter_collectors() -> set[str]:
    """The collectors this machine's node_exporter has, read off its --help."""
    binary = shutil.which("prometheus-node-exporter")
    if binary is None:
        return set()
    usage = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30)
    return set(re.findall(r"--collector\.(\w+) +Enable the", usage.stdout + usage.stderr))


# The live peer is Debian's node_exporter 1.5; these collectors' output changed since (the
# reference is the latest release), so they are checked against fixtures instead.
CHANGED_SINCE_1_5: set[str] = {
    # node_btrfs_commits_total, node_btrfs_*_commit_seconds are new.
    "btrfs",
    # node_disk_info gained the rotational label, node_disk_info's serial falls back to
    # SCSI_IDENT_SERIAL and ID_SERIAL, node_disk_device_mapper_backing_device_info is new.
    "diskstats",
    # node_nfsd_requests_total gained method="WdelegGetattr", "SetClientID" and
    # "SetClientIDConfirm" for NFSv4.
    "nfsd",
    # filesystem: every series gained the device_error label, node_filesystem_mount_info is
    # new, read-only also from the superblock options, erofs excluded (tests/collectors/
    # test_filesystem.py).
    "filesystem",
    # The latest release exports only the /proc/meminfo fields procfs's Meminfo knows
    # (no KReclaimable, SecPageTables, FileHugePages, ...): tests/collectors/test_meminfo.py.
    "meminfo",
    # kB fields of node_memory_numa_* gained the _bytes suffix (compared on fixtures in
    # tests/collectors/test_meminfo_numa.py).
    "meminfo_numa",
    # zfs: dbufstats is read under its real name (1.5 looked for dbuf_stats), int64 kstats
    # (arcstats memory_available_bytes) and node_zfs_zpool_state are new, dataset names keep
    # their spaces.
    "zfs",
    # node_systemd_virtualization_info is new; needs a systemd manager on the bus, which
    # tests/collectors/test_systemd.py provides and compares there.
    "systemd",
    # node_network_info gained the adminstate label.
    "netclass",
    # mountstats: transport series gained the transport label (one per nconnect connection),
    # node_mountstats_nfs_mountpoint_info is new (tests/collectors/test_mountstats.py).
    "mountstats",
}
# Families the latest release added to a collector whose other series did not change: ours
# are left out of the comparison (and compared on fixtures in their collector's tests).
NEW_SINCE_1_5: dict[str, tuple[str, ...]] = {
    "softnet": ("node_softnet_backlog_len", "node_softnet_cpu_collision_total",
                "node_softnet_flow_limit_count_total", "node_softnet_received_rps_total"),
}
# Counts of processes and of TCP connections by state: every process or connection started or
# ended on the host between the reads changes them, so they are checked on fixtures and
# loopback connections (tests/collectors/test_processes.py, test_tcpstat.py). Free pages per
# zone and order, kernel stacks, dirty pages: the kernel changes them between any two reads
# (compared on fixtures in tests/collectors/test_buddyinfo.py, test_zoneinfo.py), and so do
# slab object counts (test_slabinfo.py).
UNSTABLE_ON_A_LIVE_HOST = {"processes", "tcpstat", "buddyinfo", "zoneinfo", "slabinfo"}
# Collectors whose source is a D-Bus service this container has no system bus for: compared
# with node_exporter on a real dbus-daemon serving a stand-in (tests/collectors/test_logind.py).
ON_A_TEST_BUS = {"logind"}
NE_1_5 = (node_exporter_collectors() - CHANGED_SINCE_1_5 - UNSTABLE_ON_A_LIVE_HOST
          - ON_A_TEST_BUS)

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Series:
    out: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.startswith(NOT_HOST):
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def scrape(url: str) -> Series:
    return parse(urllib.request.urlopen(url, timeout=10).read().decode())


def ours(name: str, config: Config) -> Series:
    return parse(encode(build_collector(name, config).collect(), TEXT).decode())


def slack_for(metric: str) -> float | None:
    for prefix, slack in VOLATILE.items():
        if metric.startswith(prefix):
            return slack
    return None


def compare(name: str, config: Config, url: str, ignore: tuple[str, ...] = ()) -> None:
    before = scrape(url)
    mine = {k: v for k, v in ours(name, config).items() if not k[0].startswith(ignore)}
    after = scrape(url)
    theirs_keys = before.keys() & after.keys()
    # Nothing on either side is agreement (a source this machine lacks, such as hwmon in a
    # container); nothing on ours alone is caught below as series hostagent lacks.
    only_theirs = sorted(k for k in theirs_keys if k not in mine)
    only_mine = sorted(k for k in mine if k not in before and k not in after)
    assert not only_theirs, f"node_exporter exposes series hostagent lacks: {only_theirs[:10]}"
    assert not only_mine, f"hostagent exposes series node_exporter lacks: {only_mine[:10]}"
    wrong = []
    for key in sorted(theirs_keys):
        lo, hi = sorted((before[key], after[key]))
        slack = slack_for(key[0])
        if slack is not None:
            lo, hi = lo - abs(lo) * slack - slack, hi + abs(hi) * slack + slack
        if key[0] == "node_time_seconds":
            lo, hi = lo - 1, hi + 1
        if not lo <= mine[key] <= hi:
            wrong.append((key, before[key], mine[key], after[key]))
    assert not wrong, f"values outside node_exporter's bracket: {wrong[:10]}"


# Debian's node_exporter changes two upstream defaults (more mount points excluded, `lo`
# excluded from netdev), and the latest release changed the netstat and diskstats defaults
# since 1.5; hostagent keeps the latest upstream's, so both run with hostagent's here.
EXTRA_FLAGS = {
    "netstat": [f"--collector.netstat.fields={NetstatSettings().fields}"],
    "diskstats": [f"--collector.diskstats.device-exclude={DiskstatsSettings().device_exclude}"],
    "filesystem": [
        f"--collector.filesystem.mount-points-exclude={FilesystemSettings().mount_points_exclude}",
        f"--collector.filesystem.fs-types-exclude={FilesystemSettings().fs_types_exclude}",
    ],
    "netdev": ["--collector.netdev.device-exclude="],
}


@pytest.mark.parametrize("name", [n for n, d in BY_NAME.items()
                                  if d.node_exporter and n != "textfile" and n in NE_1_5])
def test_collector_matches_node_exporter(name: str, node_exporter) -> None:
    url = node_exporter("--collector.disable-defaults", f"--collector.{name}",
                        *EXTRA_FLAGS.get(name, []))
    compare(name, Config(), url, NEW_SINCE_1_5.get(name, ()))


def test_textfile_matches_node_exporter(node_exporter, tmp_path: Path) -> None:
    (tmp_path / "batch.prom").write_text(
        "# HELP batch_last_success_seconds Last success.\n"
        "# TYPE batch_last_success_seconds gauge\n"
        'batch_last_success_seconds{job="backup"} 1.7e9\n'
        "# TYPE batch_runs_total counter\nbatch_runs_total 42\n")
    (tmp_path / "broken.prom").write_text("this is { not valid\n")
    url = node_exporter("--collector.disable-defaults", "--collector.textfile",
                        f"--collector.textfile.directory={tmp_path}")
    config = Config.model_validate({"collectors": {"textfile": {"directory": str(tmp_path)}}})
    compare("textfile", config, url)
