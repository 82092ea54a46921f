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
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fixture_host import fixture_host, hostagent_cycle_cpu, node_exporter_scrape_cpu, print_figures

COLLECTORS = ["bcache", "btrfs", "diskstats", "mdadm", "nfs", "nfsd", "xfs", "zfs"]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hostagent-storage-") as tmp:
        proc, sys_, udev = fixture_host(Path(tmp), COLLECTORS)
        ours, fresh, collect, lines = hostagent_cycle_cpu(proc, sys_, udev, args.cycles,
                                                          COLLECTORS)
        theirs, series = node_exporter_scrape_cpu(proc, sys_, udev, args.cycles, COLLECTORS)
    print(f"collectors: {', '.join(COLLECTORS)} (fixture host, {args.cycles} cycles)")
    print_figures(ours, fresh, collect, lines, theirs, series)
    return 0


if __name__ == "__main__":
    sys.exit(main())
