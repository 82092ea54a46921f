"""A large textfile that came and went leaves the agent's heap as it found it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client.metrics_core import Metric

from agent.collectors.textfile import TextfileCollector
from agent.exposition.formats import OPENMETRICS, TEXT, encode
from agent.exposition.packed import PackedFamily

FIXTURE = Path(__file__).parent / "fixtures" / "textfile" / "types"

# Rewrites of a 20 000-series textfile through the collector and the render, then its removal:
# Python's small-object arenas allocated at the end, against the start. With samples kept as
# objects, ~30 arenas (MB) stayed, held by a few hundred blocks made while they were alive.
CHURN = textwrap.dedent("""
    import os, re, sys, tempfile
    from pathlib import Path
    from agent.collectors.textfile import TextfileCollector
    from agent.exposition import render
    from agent.exposition.registry import Snapshot
    from agent.exposition.selfmetrics import RuntimeFamilies

    def arenas():
        with tempfile.TemporaryFile("w+") as out:
            saved = os.dup(2)
            os.dup2(out.fileno(), 2)
            sys._debugmallocstats()
            os.dup2(saved, 2)
            out.seek(0)
            return int(re.search(r"# arenas allocated current\\s*=\\s*([\\d,]+)",
                                 out.read())[1].replace(",", ""))

    directory = Path(sys.argv[1])
    (directory / "small.prom").write_text('a 1\\nb{x="y"} 2\\n')
    collector, cache, runtime = TextfileCollector(directory), render.Cache(), RuntimeFamilies(True)

    def tick():
        snapshots = {"textfile": Snapshot.of("textfile", collector.collect())}
        render.render(1, snapshots, [], runtime, ["text", "openmetrics"], cache=cache)

    tick(); tick()
    start = arenas()
    for size in (20_000, 8_000, 20_000, 2_000):
        (directory / ".new").write_text("".join(
            f'churn{{n="{n}",shard="s{n % 31}"}} {n}.25\\n' for n in range(size)))
        (directory / ".new").rename(directory / "churn.prom")
        tick()
    (directory / "churn.prom").unlink()
    tick(); tick()
    print(arenas() - start)
""")


def test_textfile_churn_gives_its_arenas_back(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", CHURN, str(tmp_path)], capture_output=True,
                         text=True, timeout=120, check=True)
    assert int(out.stdout) <= 10, out.stdout  # 30 with samples kept as objects


def _unpacked(family: Metric) -> Metric:
    plain = Metric(family.name, family.documentation, family.type, family.unit)
    plain.samples = list(family.samples)
    return plain


def test_packed_families_encode_as_their_samples_do() -> None:
    families = TextfileCollector(FIXTURE).collect()
    packed = [f for f in families if isinstance(f, PackedFamily)]
    assert len(packed) > 3, "the fixture's families are kept packed"
    for fmt in (TEXT, OPENMETRICS):
        assert encode(families, fmt) == encode([_unpacked(f) for f in families], fmt)
