"""Shared by the fixture-host benchmarks (storage_cpu, hardware_cpu, default_set_cpu): a host
merged from collectors' test fixture trees, hostagent's CPU per collection cycle on it,
node_exporter 1.5's CPU per scrape on the same tree, and the figures both print."""

from __future__ import annotations

import gc
import shutil
import time
from pathlib import Path

from common import ROOT, free_port, scrape_cpu, start, wait_http

from agent.agent import build_collector
from agent.collectors.common import Unchanged
from agent.config import Config
from agent.exposition.formats import OPENMETRICS, encode
from agent.exposition.registry import Snapshot
from agent.exposition.render import Cache, RuntimeFamilies, render

FIXTURES = ROOT / "tests" / "fixtures"


def fixture_host(into: Path, collectors: list[str]) -> tuple[Path, Path, Path]:
    """proc, sys and udev trees merged from the collectors' fixtures (where two trees hold
    the same file, the later collector's wins)."""
    proc, sys_, udev = into / "proc", into / "sys", into / "udev"
    for name in collectors:
        for part, target in (("proc", proc), ("sys", sys_), ("udev", udev)):
            source = FIXTURES / name / part
            if source.is_dir():
                shutil.copytree(source, target, dirs_exist_ok=True, symlinks=True)
    for tree in (proc, sys_, udev):
        tree.mkdir(exist_ok=True)
    return proc, sys_, udev


def config_for(proc: Path, sys_: Path, udev: Path) -> Config:
    return Config.model_validate(
        {"paths": {"procfs": proc, "sysfs": sys_, "rootfs": "/", "udev_data": udev}})


def hostagent_cycle_cpu(proc: Path, sys_: Path, udev: Path, cycles: int,
                        names: list[str]) -> tuple[float, float, float, int]:
    """(CPU per cycle as the agent pays it: collect, snapshot, one render whose cache reuses
    the encodings of unchanged families; CPU per cycle with every family encoded afresh, as
    when every value changed; CPU per cycle of collection alone; exposition lines)."""
    config = config_for(proc, sys_, udev)
    collectors = {name: build_collector(name, config) for name in names}
    runtime = RuntimeFamilies()
    cache = Cache()
    expo = None
    for generation in range(3):  # warm up (imports, the render cache)
        snapshots = {n: Snapshot.of(n, c.collect()) for n, c in collectors.items()}
        expo = render(generation, snapshots, [], runtime, [OPENMETRICS], cache=cache)
    gc.collect()
    gc.freeze()  # as the agent does once started: full collections skip what is loaded
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


def render_cpu(proc: Path, sys_: Path, udev: Path, cycles: int,
               names: list[str]) -> tuple[float, float]:
    """CPU of the render alone: (the same snapshots rendered again, as when nothing changed;
    each render of a fresh collection's snapshots, collected beforehand)."""
    config = config_for(proc, sys_, udev)
    collectors = {name: build_collector(name, config) for name in names}
    collections = [{n: Snapshot.of(n, c.collect()) for n, c in collectors.items()}
                   for _ in range(cycles)]
    runtime, cache = RuntimeFamilies(), Cache()
    for generation in range(3):  # warm up
        render(generation, collections[0], [], runtime, [OPENMETRICS], cache=cache)
    gc.collect()
    start = time.process_time()
    for generation in range(cycles):
        render(3 + generation, collections[0], [], runtime, [OPENMETRICS], cache=cache)
    same = (time.process_time() - start) / cycles
    start = time.process_time()
    for generation, snapshots in enumerate(collections):
        render(3 + cycles + generation, snapshots, [], runtime, [OPENMETRICS], cache=cache)
    return same, (time.process_time() - start) / cycles


def forget(collector: object) -> None:
    """Drops what a collector remembers of its previous input, so it parses and builds all."""
    for attribute, value in vars(collector).items():
        if isinstance(value, Unchanged):
            setattr(collector, attribute, type(value)())


def changed_cycle_cpu(proc: Path, sys_: Path, udev: Path, cycles: int,
                      names: list[str]) -> float:
    """CPU per cycle as when every file read other bytes than at the previous cycle: each
    collector's memory of its previous input dropped before it collects, every family encoded."""
    config = config_for(proc, sys_, udev)
    collectors = [build_collector(name, config) for name in names]
    start = time.process_time()
    for _ in range(cycles):
        for collector in collectors:
            forget(collector)
            encode(collector.collect(), OPENMETRICS)
    return (time.process_time() - start) / cycles


def node_exporter_scrape_cpu(proc: Path, sys_: Path, udev: Path, cycles: int,
                             names: list[str]) -> tuple[float, int]:
    """(node_exporter's CPU per scrape with only names on the tree, node_* series but its
    scrape meta series)."""
    port = free_port()
    node = start(["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{port}",
                  f"--path.procfs={proc}", f"--path.sysfs={sys_}", f"--path.udev.data={udev}",
                  "--collector.disable-defaults", *(f"--collector.{c}" for c in names)])
    try:
        wait_http(port, "/metrics")
        cpu, body = scrape_cpu(node.pid, port, cycles)
    finally:
        node.terminate()
        node.wait(timeout=10)
    series = sum(1 for line in body.splitlines()
                 if line.startswith(b"node_") and not line.startswith(b"node_scrape"))
    return cpu, series


def print_figures(ours: float, fresh: float, collect: float | None, lines: int,
                  theirs: float, series: int) -> None:
    """hostagent's CPU per cycle (cached render, every family encoded afresh, collection
    alone unless None) against node_exporter's per scrape, as figures and ratios."""
    print(f"{'hostagent CPU per cycle':36s} {ours * 1e3:8.3f} ms  ({lines} exposition lines)")
    print(f"{'  every family encoded afresh':36s} {fresh * 1e3:8.3f} ms")
    if collect is not None:
        print(f"{'  collection alone':36s} {collect * 1e3:8.3f} ms")
    print(f"{'node_exporter 1.5 CPU per scrape':36s} {theirs * 1e3:8.3f} ms  ({series} series)")
    print(f"{'ratio hostagent / node_exporter':36s} {ours / theirs:8.2f}    (target <= 1.0)")
    print(f"{'  every family encoded afresh':36s} {fresh / theirs:8.2f}")
    if collect is not None:
        print(f"{'  collection alone':36s} {collect / theirs:8.2f}")
