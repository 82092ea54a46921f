"""CPU per collection cycle of the full default collector set on a fixture host: hostagent's
default set against node_exporter 1.5's default set, both with --path.procfs/--path.sysfs/
--path.udev.data at the same tree, measured in the same run.

The fixture host is the union of the default collectors' test fixture trees
(tests/fixtures/NAME; where two trees hold the same file, the later collector's in
alphabetical order wins, for both agents alike). Collectors that read no tree (filesystem's
statvfs, time, timex, uname) read the live host on both sides.

hostagent: each default collector collects once per cycle, then one render in OpenMetrics
whose cache reuses the encoding of unchanged families; process CPU time. Nothing changes on a
fixture host between cycles, so collectors reuse what they built from the same bytes; "every
input changed" is the cycle with that reuse defeated and every family encoded. node_exporter: its
process's CPU per scrape.

usage: python bench/default_set_cpu.py [--cycles N]   (default 100; about 20 s)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import node_exporter_collectors
from fixture_host import (
    changed_cycle_cpu,
    config_for,
    fixture_host,
    hostagent_cycle_cpu,
    node_exporter_scrape_cpu,
    print_figures,
    render_cpu,
)

from agent.agent import build_collector
from agent.collectors.catalog import DECLARATIONS

DEFAULT_SET = sorted(d.name for d in DECLARATIONS if d.default and d.node_exporter)
# Fixture trees named after the module rather than the collector; tapestats' tree is left
# out because node_exporter 1.5's procfs panics on it (a tape without every statistic).
FIXTURE_NAMES = sorted({*DEFAULT_SET, "load", "system"} - {"tapestats"})


def working(proc: Path, sys_: Path, udev: Path) -> tuple[list[str], list[str]]:
    """The default collectors that run on the tree, and those that fail on it (a source one
    collector needs that no fixture provides); node_exporter pays for its failures too."""
    config = config_for(proc, sys_, udev)
    ok, failed = [], []
    for name in DEFAULT_SET:
        try:
            build_collector(name, config).collect()
            ok.append(name)
        except Exception:  # reported, not fatal to the benchmark
            failed.append(name)
    return ok, failed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hostagent-defaults-") as tmp:
        proc, sys_, udev = fixture_host(Path(tmp), FIXTURE_NAMES)
        names, failed = working(proc, sys_, udev)
        ours, fresh, _, lines = hostagent_cycle_cpu(proc, sys_, udev, args.cycles, names)
        theirs_names = sorted(set(DEFAULT_SET) & node_exporter_collectors())
        theirs, series = node_exporter_scrape_cpu(proc, sys_, udev, args.cycles,
                                                   theirs_names)
        changed = changed_cycle_cpu(proc, sys_, udev, args.cycles, names)
        render_same, render_fresh = render_cpu(proc, sys_, udev, args.cycles, names)
    print(f"default set: {len(DEFAULT_SET)} collectors (fixture host, {args.cycles} cycles)")
    print(f"  node_exporter 1.5 runs the {len(theirs_names)} of them it has (Debian's "
          "build adds systemd to its own defaults, so the set is given explicitly)")
    if failed:
        print(f"  failing on the tree (left out of hostagent's cycle): {', '.join(failed)}")
    print_figures(ours, fresh, None, lines, theirs, series)
    print(f"{'  every input changed, no reuse':36s} {changed * 1e3:8.3f} ms  "
          f"ratio {changed / theirs:.2f}")
    print(f"{'render alone, nothing changed':36s} {render_same * 1e3:8.3f} ms")
    print(f"{'render alone, fresh collections':36s} {render_fresh * 1e3:8.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
