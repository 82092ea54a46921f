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

On a fixture host no file changes between cycles, so the collectors hand out the families
they built at the previous cycle (common.Unchanged). --inputs-changed builds them afresh on
every collect instead, as if every file read differently each cycle.

usage: python bench/storage_cpu.py [--cycles N] [--inputs-changed]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fixture_host import fixture_host, hostagent_cycle_cpu, node_exporter_scrape_cpu, print_figures

from agent.collectors.common import Unchanged

T = TypeVar("T")
COLLECTORS = ["bcache", "btrfs", "diskstats", "mdadm", "nfs", "nfsd", "xfs", "zfs"]


def build_every_time() -> None:
    """What the collectors cost when every file they read changed since the previous cycle."""
    def get(self: object, raw: Hashable, build: Callable[[], T]) -> T:
        return build()

    Unchanged.get = get  # type: ignore[method-assign]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=300)
    parser.add_argument("--inputs-changed", action="store_true",
                        help="build every collector's families afresh on every collect")
    args = parser.parse_args()
    if args.inputs_changed:
        build_every_time()
    with tempfile.TemporaryDirectory(prefix="hostagent-storage-") as tmp:
        proc, sys_, udev = fixture_host(Path(tmp), COLLECTORS)
        ours, fresh, collect, lines = hostagent_cycle_cpu(proc, sys_, udev, args.cycles,
                                                          COLLECTORS)
        theirs, series = node_exporter_scrape_cpu(proc, sys_, udev, args.cycles, COLLECTORS)
    print(f"collectors: {', '.join(COLLECTORS)} (fixture host, {args.cycles} cycles"
          f"{', every input changed' if args.inputs_changed else ''})")
    print_figures(ours, fresh, collect, lines, theirs, series)
    return 0


if __name__ == "__main__":
    sys.exit(main())
