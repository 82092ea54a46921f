"""CPU per collection cycle of the storage collectors on a fixture host: hostagent against
node_exporter 1.5 (--path.procfs/--path.sysfs/--path.udev.data at the same tree) for the
storage collectors both have, measured in the same run.

The fixture host is the union of the collectors' test fixture trees (tests/fixtures/NAME):
md arrays mid-resync, ZFS pools with datasets, a bcache set, XFS and btrfs filesystems, NFS
client and server statistics, disks with udev identity. filesystem is left out (it stats the
live host's mounts, not a tree) and so is dmmultipath (node_exporter 1.5 does not have it).

hostagent: each collector collects once per cycle, then one render in OpenMetrics (as
Prometheus asks), whose cache reuses the encoding of a family whose samples did not change, in
this process, process CPU time; and the same with every family encoded afresh (every value
changed). node_exporter: its process's CPU per scrape.

usage: python bench/storage_cpu.py [--cycles N]
"""

from __future__ import annotations

import argparse
import http.client
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import PROMETHEUS_HEADERS, cpu_seconds, free_port, start, wait_http

from agent.agent import build_collector
from agent.config import Config
from agent.exposition.formats import OPENMETRICS, encode
from agent.exposition.registry import Snapshot
from agent.exposition.render import Cache, RuntimeFamilies, render

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
COLLECTORS = ["bcache", "btrfs", "diskstats", "mdadm", "nfs", "nfsd", "xfs", "zfs"]


def fixture_host(into: Path, collectors: list[str] = COLLECTORS) -> tuple[Path, Path, Path]:
    """proc, sys and udev trees merged from the collectors' fixtures."""
    proc, sys_, udev = into / "proc", into / "sys", into / "udev"
    for name in collectors:
        for part, target in (("proc", proc), ("sys", sys_), ("udev", udev)):
            source = FIXTURES / name / part
            if source.is_dir():
                shutil.copytree(source, target, dirs_exist_ok=True, symlinks=True)
    for tree in (proc, sys_, udev):
        tree.mkdir(exist_ok=True)
    return proc, sys_, udev


def hostagent_cycle_cpu(proc: Path, sys_: Path, udev: Path, cycles: int,
                        names: list[str] = COLLECTORS) -> tuple[float, float, float, int]:
    """(CPU per cycle as the agent pays it: collect, snapshot, one render whose cache reuses
    the encodings of unchanged families; CPU per cycle with every family encoded afresh, as
    when every value changed; CPU per cycle of collection alone; exposition lines)."""
    config = Config.model_validate(
        {"paths": {"procfs": proc, "sysfs": sys_, "rootfs": "/", "udev_data": udev}})
    collectors = {name: build_collector(name, config) for name in names}
    runtime = RuntimeFamilies()
    cache = Cache()
    expo = None
    for generation in range(3):  # warm up (imports, the render cache)
        snapshots = {n: Snapshot.of(n, c.collect()) for n, c in collectors.items()}
        expo = render(generation, snapshots, [], runtime, [OPENMETRICS], cache=cache)
    start_cpu = time.process_time()
    for generation in range(3, cycles + 3):
        snapshots = {n: Snapshot.of(n, c.collect()) for n, c in collectors.items()}
        expo = render(generation, snapshots, [], runtime, [OPENMETRICS], cache=cache)
    cached = (time.process_time() - start_cpu) / cycles
    start_cpu = time.process_time()
    for _ in range(cycles):
        b"".join(encode(c.collect(), OPENMETRICS) for c in collectors.values())
    fresh = (time.process_time() - start_cpu) / cycles
    start_cpu = time.process_time()
    for _ in range(cycles):
        for c in collectors.values():
            c.collect()
    collect = (time.process_time() - start_cpu) / cycles
    assert expo is not None
    return cached, fresh, collect, expo.bodies[OPENMETRICS].plain.count(b"\n")


def node_exporter_scrape_cpu(proc: Path, sys_: Path, udev: Path, cycles: int,
                             names: list[str] = COLLECTORS) -> tuple[float, int]:
    port = free_port()
    node = start(["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{port}",
                  f"--path.procfs={proc}", f"--path.sysfs={sys_}", f"--path.udev.data={udev}",
                  "--collector.disable-defaults", *(f"--collector.{c}" for c in names)])
    try:
        wait_http(port, "/metrics")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        body = b""
        for _ in range(5):
            conn.request("GET", "/metrics", headers={**PROMETHEUS_HEADERS,
                                                     "Accept-Encoding": "identity"})
            body = conn.getresponse().read()
        before = cpu_seconds(node.pid)
        for _ in range(cycles):
            conn.request("GET", "/metrics", headers={**PROMETHEUS_HEADERS,
                                                     "Accept-Encoding": "identity"})
            conn.getresponse().read()
        series = sum(1 for line in body.splitlines()
                     if line.startswith((b"node_", )) and not line.startswith(b"node_scrape"))
        return (cpu_seconds(node.pid) - before) / cycles, series
    finally:
        node.terminate()
        node.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hostagent-storage-") as tmp:
        proc, sys_, udev = fixture_host(Path(tmp))
        ours, fresh, collect, lines = hostagent_cycle_cpu(proc, sys_, udev, args.cycles)
        theirs, series = node_exporter_scrape_cpu(proc, sys_, udev, args.cycles)
    print(f"collectors: {', '.join(COLLECTORS)} (fixture host, {args.cycles} cycles)")
    print(f"{'hostagent CPU per cycle':36s} {ours * 1e3:8.3f} ms  ({lines} exposition lines)")
    print(f"{'  every family encoded afresh':36s} {fresh * 1e3:8.3f} ms")
    print(f"{'  collection alone':36s} {collect * 1e3:8.3f} ms")
    print(f"{'node_exporter 1.5 CPU per scrape':36s} {theirs * 1e3:8.3f} ms  ({series} series)")
    print(f"{'ratio hostagent / node_exporter':36s} {ours / theirs:8.2f}    (target <= 1.0)")
    print(f"{'  every family encoded afresh':36s} {fresh / theirs:8.2f}")
    print(f"{'  collection alone':36s} {collect / theirs:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
