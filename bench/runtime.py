"""Runtime-profiles benchmark: what observing the agent costs, as a fraction of one core.

1. The runtime collector per cycle (collect + encode, thread CPU time), against the cpu
   collector measured the same way, and what that is at its 15 s default interval.
2. The always-on probes (loop-lag timer task, GC callbacks) on an idle uvloop loop, against the
   same loop without them.
3. The sampler at 100 Hz on an idle agent: a real agent process with debug enabled, its CPU over
   a window with no profile, then over a window with GET /debug/profile running.

usage: python bench/runtime.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import http.client
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import uvloop
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import cpu_seconds, free_port, hostagent_command, start, wait_http

from agent import collectors
from agent.collectors.runtime import RuntimeProbes
from agent.config import Config
from agent.pool import DaemonThreadPool

DEFAULT_INTERVAL = 15.0


class Families:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def cycle_cpu(collect: Callable[[], list[Metric]], cycles: int) -> float:
    """Thread CPU seconds per collect + text encoding."""
    for _ in range(10):
        generate_latest(Families(collect()))
    begin = time.thread_time()
    for _ in range(cycles):
        generate_latest(Families(collect()))
    return (time.thread_time() - begin) / cycles


async def fed_probes(seconds: float) -> RuntimeProbes:
    """Probes with something recorded, as in a running agent."""
    probes = RuntimeProbes(pool=DaemonThreadPool(1))
    probes.gc_pauses.start()
    task = asyncio.create_task(probes.loop_lag.run())
    for _ in range(3):
        gc.collect()
    await asyncio.sleep(seconds)
    task.cancel()
    probes.gc_pauses.stop()
    return probes


async def idle_loop_cpu(seconds: float, probed: bool) -> float:
    """Process CPU seconds per second of an idle loop, with or without the probes running."""
    probes = RuntimeProbes()
    task = asyncio.create_task(probes.loop_lag.run()) if probed else None
    if probed:
        probes.gc_pauses.start()
    begin = time.process_time()
    await asyncio.sleep(seconds)
    used = time.process_time() - begin
    if task is not None:
        task.cancel()
        probes.gc_pauses.stop()
    return used / seconds


def agent_cpu_fraction(pid: int, seconds: float, port: int, hz: int | None) -> float:
    """The agent's CPU seconds per second over a window, profiling at hz during it if set."""
    begin = cpu_seconds(pid)
    started = time.monotonic()
    if hz is None:
        time.sleep(seconds)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=seconds + 30)
        conn.request("GET", f"/debug/profile?seconds={seconds:g}&hz={hz}")
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"profile: HTTP {response.status}")
    return (cpu_seconds(pid) - begin) / (time.monotonic() - started)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smoke mode: short windows")
    args = parser.parse_args()
    cycles, idle_s, window_s = (200, 1.0, 3.0) if args.quick else (5000, 10.0, 15.0)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        probes = runner.run(fed_probes(1.0))
        runtime_cycle = cycle_cpu(collectors.build("runtime", Config(), probes).collect, cycles)
        cpu_collector = collectors.build("cpu", Config())
        cpu_cycle = cycle_cpu(lambda: list(cpu_collector.collect()), cycles)
        bare = runner.run(idle_loop_cpu(idle_s, probed=False))
        probed = runner.run(idle_loop_cpu(idle_s, probed=True))

    config = Path(tempfile.mkdtemp(prefix="hostagent-bench-")) / "hostagent.yml"
    config.write_text("debug: {enabled: true}\n")
    port = free_port()
    agent = start([*hostagent_command(port, None), "--config", str(config)])
    try:
        wait_http(port, "/-/ready")
        time.sleep(2)
        idle = agent_cpu_fraction(agent.pid, window_s, port, None)
        sampling = agent_cpu_fraction(agent.pid, window_s, port, 100)
    finally:
        agent.terminate()
        agent.wait(timeout=10)

    def line(label: str, value: str, note: str = "") -> None:
        print(f"  {label:48s} {value:>12s}   {note}")

    print("runtime collector, per cycle (collect + encode)")
    line("runtime collector CPU per cycle", f"{runtime_cycle * 1e6:.0f} us")
    line("cpu collector CPU per cycle (peer)", f"{cpu_cycle * 1e6:.0f} us")
    line("ratio runtime / cpu", f"{runtime_cycle / cpu_cycle:.2f}")
    line(f"runtime collector at {DEFAULT_INTERVAL:g} s, % of a core",
         f"{runtime_cycle / DEFAULT_INTERVAL * 100:.4f}")
    print("probes on an idle uvloop loop (loop-lag timer every 250 ms, GC callbacks)")
    line("idle loop without probes, % of a core", f"{bare * 100:.3f}")
    line("idle loop with probes, % of a core", f"{probed * 100:.3f}")
    line("probes, % of a core", f"{(probed - bare) * 100:.3f}")
    print(f"sampler at 100 Hz on an idle agent (default collectors, {window_s:g} s windows)")
    line("agent idle, % of a core", f"{idle * 100:.2f}")
    line("agent while profiling, % of a core", f"{sampling * 100:.2f}")
    line("sampler at 100 Hz, % of a core", f"{(sampling - idle) * 100:.2f}", "(target <= 5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
