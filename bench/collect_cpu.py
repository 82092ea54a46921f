"""CPU per collection cycle: hostagent's default collectors vs node_exporter's equivalent set.

hostagent: every enabled collector collects and encodes once, then one render (what one
tick of all collectors costs), measured with process CPU time, in this process.
node_exporter: the same collectors (its names), CPU of its process per gzip scrape.

usage: python bench/collect_cpu.py [--cycles N] [--full]
  --full: node_exporter's full default set against hostagent's full default set
"""

from __future__ import annotations

import argparse
import gc
import gzip
import http.client
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    PROMETHEUS_HEADERS,
    cpu_seconds,
    free_port,
    node_exporter_command,
    start,
    wait_http,
)

from agent.agent import build_jobs
from agent.collectors.catalog import BY_NAME
from agent.config import Config
from agent.exposition.formats import OPENMETRICS
from agent.exposition.registry import Snapshot
from agent.exposition.render import Cache, RuntimeFamilies, render


def hostagent_cycle_cpu(cycles: int) -> tuple[float, float, int, int, list[str]]:
    config = Config()
    jobs = build_jobs(config)
    runtime = RuntimeFamilies()
    # Prometheus asks for OpenMetrics: the one format a Prometheus-scraped agent renders.
    formats = [OPENMETRICS]
    cache = Cache()  # the renderer's: encodings of unchanged families are reused
    expo = None
    render_cpu = 0.0
    for job in jobs:  # warm up (imports, first reads), then freeze as the agent does
        job.collector.collect()
    gc.collect()
    gc.freeze()
    start_cpu = time.process_time()
    for generation in range(cycles):
        snapshots = {job.name: Snapshot.of(job.name, job.collector.collect()) for job in jobs}
        before_render = time.process_time()
        expo = render(generation, snapshots, [], runtime, formats, cache=cache)
        render_cpu += time.process_time() - before_render
    total = time.process_time() - start_cpu
    assert expo is not None
    return (total / cycles, render_cpu / cycles, len(expo.bodies[OPENMETRICS].plain),
            len(expo.bodies[OPENMETRICS].gzipped), [job.name for job in jobs])


def node_exporter_scrape_cpu(cycles: int, names: list[str] | None) -> tuple[float, int, int]:
    port = free_port()
    proc = start(node_exporter_command(port, names, own_defaults=names is None))
    try:
        wait_http(port, "/metrics")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        body = b""
        for _ in range(5):  # warm up
            conn.request("GET", "/metrics", headers=PROMETHEUS_HEADERS)
            body = conn.getresponse().read()
        before = cpu_seconds(proc.pid)
        for _ in range(cycles):
            conn.request("GET", "/metrics", headers=PROMETHEUS_HEADERS)
            conn.getresponse().read()
        used = cpu_seconds(proc.pid) - before
        return used / cycles, len(gzip.decompress(body)), len(body)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--full", action="store_true",
                        help="node_exporter's full default collector set")
    args = parser.parse_args()
    ours, render_s, size, gz_size, names = hostagent_cycle_cpu(args.cycles)
    equivalent = [n for n in names if n in BY_NAME and BY_NAME[n].node_exporter]
    theirs, their_size, their_gz = node_exporter_scrape_cpu(
        args.cycles, None if args.full else equivalent)
    peer = "node_exporter (full default set)" if args.full else "node_exporter (same collectors)"
    print(f"hostagent collectors: {', '.join(names)}")
    print(f"{'hostagent CPU per cycle':36s} {ours * 1e3:8.2f} ms  (render {render_s * 1e3:.2f} ms)")
    print(f"{peer + ' CPU per scrape':36s} {theirs * 1e3:8.2f} ms")
    print(f"{'ratio hostagent / node_exporter':36s} {ours / theirs:8.2f}    (target <= 1.0)")
    print(f"{'exposition hostagent':36s} {size:8d} B  ({gz_size} B gzipped)")
    print(f"{'exposition node_exporter':36s} {their_size:8d} B  ({their_gz} B gzipped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
