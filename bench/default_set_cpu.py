"""CPU per collection cycle of the full default collector set on a fixture host: hostagent's
default set against node_exporter 1.5's default set, both with --path.procfs/--path.sysfs/
--path.udev.data at the same tree, measured in the same run.

The fixture host is the union of the default collectors' test fixture trees
(tests/fixtures/NAME; where two trees hold the same file, the later collector's in
alphabetical order wins, for both agents alike). Collectors that read no tree (filesystem's
statvfs, time, timex, uname) read the live host on both sides.

hostagent: each default collector collects once per cycle, then one render in OpenMetrics
whose cache reuses the encoding of unchanged families; process CPU time. node_exporter: its
process's CPU per scrape.

usage: python bench/default_set_cpu.py [--cycles N]   (default 100; about 20 s)
"""

from __future__ import annotations

import argparse
import http.client
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import PROMETHEUS_HEADERS, cpu_seconds, free_port, start, wait_http
from storage_cpu import fixture_host, hostagent_cycle_cpu

from agent.agent import build_collector
from agent.collectors.catalog import DECLARATIONS
from agent.config import Config

DEFAULT_SET = sorted(d.name for d in DECLARATIONS if d.default and d.node_exporter)
# Fixture trees named after the module rather than the collector; tapestats' tree is left
# out because node_exporter 1.5's procfs panics on it (a tape without every statistic).
FIXTURE_NAMES = sorted({*DEFAULT_SET, "load", "system"} - {"tapestats"})


def node_exporter_collectors() -> set[str]:
    usage = subprocess.run(["prometheus-node-exporter", "--help"], capture_output=True,
                           text=True, timeout=30)
    return set(re.findall(r"--collector\.(\w+) +Enable the", usage.stdout + usage.stderr))


def working(proc: Path, sys_: Path, udev: Path) -> tuple[list[str], list[str]]:
    """The default collectors that run on the tree, and those that fail on it (a source one
    collector needs that no fixture provides); node_exporter pays for its failures too."""
    config = Config.model_validate(
        {"paths": {"procfs": proc, "sysfs": sys_, "rootfs": "/", "udev_data": udev}})
    ok, failed = [], []
    for name in DEFAULT_SET:
        try:
            build_collector(name, config).collect()
            ok.append(name)
        except Exception:  # reported, not fatal to the benchmark
            failed.append(name)
    return ok, failed


def node_exporter_default_cpu(proc: Path, sys_: Path, udev: Path, cycles: int,
                              names: list[str]) -> tuple[float, int]:
    port = free_port()
    node = start(["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{port}",
                  f"--path.procfs={proc}", f"--path.sysfs={sys_}", f"--path.udev.data={udev}",
                  "--collector.disable-defaults", *(f"--collector.{c}" for c in names)])
    try:
        wait_http(port, "/metrics")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        headers = {**PROMETHEUS_HEADERS, "Accept-Encoding": "identity"}
        body = b""
        for _ in range(5):
            conn.request("GET", "/metrics", headers=headers)
            body = conn.getresponse().read()
        before = cpu_seconds(node.pid)
        for _ in range(cycles):
            conn.request("GET", "/metrics", headers=headers)
            conn.getresponse().read()
        series = sum(1 for line in body.splitlines()
                     if line.startswith(b"node_") and not line.startswith(b"node_scrape"))
        return (cpu_seconds(node.pid) - before) / cycles, series
    finally:
        node.terminate()
        node.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hostagent-defaults-") as tmp:
        proc, sys_, udev = fixture_host(Path(tmp), FIXTURE_NAMES)
        names, failed = working(proc, sys_, udev)
        ours, fresh, _, lines = hostagent_cycle_cpu(proc, sys_, udev, args.cycles, names)
        theirs_names = sorted(set(DEFAULT_SET) & node_exporter_collectors())
        theirs, series = node_exporter_default_cpu(proc, sys_, udev, args.cycles,
                                                   theirs_names)
    print(f"default set: {len(DEFAULT_SET)} collectors (fixture host, {args.cycles} cycles)")
    print(f"  node_exporter 1.5 runs the {len(theirs_names)} of them it has (Debian's "
          "build adds systemd to its own defaults, so the set is given explicitly)")
    if failed:
        print(f"  failing on the tree (left out of hostagent's cycle): {', '.join(failed)}")
    print(f"{'hostagent CPU per cycle':36s} {ours * 1e3:8.3f} ms  ({lines} exposition lines)")
    print(f"{'  every family encoded afresh':36s} {fresh * 1e3:8.3f} ms")
    print(f"{'node_exporter 1.5 CPU per scrape':36s} {theirs * 1e3:8.3f} ms  ({series} series)")
    print(f"{'ratio hostagent / node_exporter':36s} {ours / theirs:8.2f}    (target <= 1.0)")
    print(f"{'  every family encoded afresh':36s} {fresh / theirs:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
