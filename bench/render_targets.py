"""Render cost with many SSH targets: 500 targets x 300 node series (cpu and filesystem
families as a remote node module reports them), in process, one format (OpenMetrics, as
Prometheus asks).

Figures, CPU time of this process:
- first render (every family encoded);
- one SSH round: one target publishes new values, the exposition is rendered again (what
  every round costs the agent), by default (node series only on /probe) and with
  ssh.node_on_metrics (node series on /metrics with a `target` label);
- a gzip scrape after such a round;
- /probe for one target;
against the peer measured in the same run: encoding and gzipping the same families from
scratch with prometheus_client, what an exporter without a cache pays for one scrape.

python bench/render_targets.py [--targets N --series M] [--quick]
"""

from __future__ import annotations

import argparse
import gzip
import random
import time
from collections.abc import Callable

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from agent.exposition.encoding import labelled
from agent.exposition.formats import OPENMETRICS, encode
from agent.exposition.registry import Snapshot, TargetSnapshot
from agent.exposition.render import Cache, RuntimeFamilies, render

MODES = ("softirq", "idle", "iowait", "irq", "nice", "steal", "system", "user")


def node_families(seed: int, series: int) -> tuple[Metric, ...]:
    rnd = random.Random(seed)
    cpus = max(1, series // 2 // len(MODES))
    cpu = CounterMetricFamily("node_cpu_seconds", "Seconds the CPUs spent in each mode.",
                              labels=["cpu", "mode"])
    for n in range(cpus):
        for mode in MODES:
            cpu.add_metric([str(n), mode], round(rnd.random() * 1e6, 2))
    fs = GaugeMetricFamily("node_filesystem_avail_bytes",
                           "Filesystem space available to non-root users in bytes.",
                           labels=["device", "fstype", "mountpoint"])
    for n in range(series - cpus * len(MODES)):
        fs.add_metric([f"/dev/sd{n}", "ext4", f"/srv/{n}"], float(rnd.randrange(1 << 40)))
    return (cpu, fs)


def login(up: float) -> tuple[Metric, ...]:
    return (GaugeMetricFamily("hostagent_ssh_up", "Whether the last probe connected and "
                              "logged in.", value=up),
            GaugeMetricFamily("hostagent_ssh_probe_duration_seconds",
                              "Duration of the target's last probe round.", value=0.05))


def target(n: int, seed: int, series: int) -> TargetSnapshot:
    name = f"host{n:04d}:22"
    return TargetSnapshot(name, (("target", name),),
                          {"login": login(1.0), "node": node_families(seed, series)})


def cpu_ms(fn: Callable[[], object], repeat: int) -> float:
    start = time.process_time()
    for _ in range(repeat):
        fn()
    return (time.process_time() - start) / repeat * 1e3


def measure(label: str, modules: frozenset[str], targets: dict[str, TargetSnapshot],
            local: dict[str, Snapshot], series: int, repeat: int) -> None:
    runtime = RuntimeFamilies()
    formats = [OPENMETRICS]
    cache = Cache()
    start = time.process_time()
    expo = render(0, local, [], runtime, formats, targets, modules, cache=cache)
    first = (time.process_time() - start) * 1e3
    body = expo.bodies[OPENMETRICS]
    count = len(targets)
    rounds = iter(range(10**6))

    def one_round() -> None:
        nonlocal expo
        n = next(rounds)
        changed = target(n % count, 10**6 + n, series)
        targets[changed.name] = changed
        expo = render(n, local, [], runtime, formats, targets, modules, cache=cache)

    per_round = cpu_ms(one_round, repeat)
    scrape = cpu_ms(lambda: expo.bodies[OPENMETRICS].gzip(), 1)
    print(f"\n{label}: /metrics {len(body.plain) / 1e6:.2f} MB "
          f"({len(body.gzipped) / 1e6:.2f} MB gzipped)")
    print(f"  first render                 {first:8.1f} ms")
    print(f"  render after one SSH round   {per_round:8.1f} ms")
    print(f"  gzip for a scrape            {scrape:8.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=500)
    parser.add_argument("--series", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="50 targets, 2 repeats")
    args = parser.parse_args()
    count, repeat = (50, 2) if args.quick else (args.targets, 5)
    targets = {t.name: t for t in (target(n, n, args.series) for n in range(count))}
    local = {"cpu": Snapshot.of("cpu", node_families(-1, 300))}

    print(f"{count} targets x {args.series} node series, OpenMetrics, CPU ms of this process")
    for label, modules in (("default (node series on /probe only)", frozenset({"login"})),
                           ("ssh.node_on_metrics", frozenset({"login", "node"}))):
        measure(label, modules, targets, local, args.series, repeat)

    every = [f for t in targets.values() for f in labelled(t.all_families(), t.labels)]
    every += local["cpu"].families
    peer = cpu_ms(lambda: gzip.compress(encode(every, OPENMETRICS), 1, mtime=0), 1)
    one = next(iter(targets.values()))
    probe = cpu_ms(lambda: encode(one.all_families(), OPENMETRICS),
                   repeat)
    print(f"\npeer: encode + gzip everything from scratch  {peer:8.1f} ms")
    print(f"/probe body of one target                     {probe:8.1f} ms")


if __name__ == "__main__":
    main()
