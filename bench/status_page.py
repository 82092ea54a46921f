"""The status page's cost: one render of GET / with a full hour of history (360 points for each
host chart and each collector's sparkline), against its peer, the /health JSON of the same
report; one history sample against one collection of the cpu collector; and the history's
memory, counted by tracemalloc. Runs in a few seconds."""

from __future__ import annotations

import json
import time
import tracemalloc
from collections.abc import Callable

from agent.agent import build_collector
from agent.collectors.catalog import BY_NAME
from agent.config import Config
from agent.exposition.registry import Snapshot
from agent.exposition.status import CollectorStatus
from agent.history import POINTS, History
from agent.status_page import PageFacts, render_status_page


def per_call(fn: Callable[[], object], seconds: float = 1.0) -> float:
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        calls += 1
    return (time.perf_counter() - start) / calls


def main() -> None:
    config = Config()
    names = [name for name in BY_NAME if config.collectors.get(name).enabled]
    snapshots = [Snapshot.of(name, build_collector(name, config).collect())
                 for name in ("cpu", "meminfo", "loadavg", "diskstats", "netdev", "filesystem")]
    statuses = [CollectorStatus(name, 15, 10, 1, True, 0.0002, time.time(), None, 0, 0)
                for name in names]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    history = History()
    for step in range(POINTS):
        stamped = [Snapshot(s.name, s.families, step * 10.0) for s in snapshots]
        history.sample(stamped, statuses, step * 10.0)
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    report = {"status": "ok", "uptime_seconds": 3600.0, "collectors": {
        name: {"success": True, "stale": False, "interval_seconds": 15.0, "timeout_seconds": 10,
               "last_duration_seconds": 0.0002, "last_success_age_seconds": 3.0,
               "last_error": None, "runs": 240, "timeouts": 0, "skipped": 0}
        for name in names}}
    facts = PageFacts(hostname="bench", addresses=["127.0.0.1:9110"], history=history,
                      series=dict.fromkeys(names, 10))
    disabled = [name for name in BY_NAME if name not in names]
    page = render_status_page(report, disabled, None, facts)
    render = per_call(lambda: render_status_page(report, disabled, None, facts))
    health = per_call(lambda: json.dumps(report))
    sample = per_call(lambda: history.sample(snapshots, statuses, time.time()))
    collect = per_call(build_collector("cpu", config).collect)
    print(f"collectors: {len(names)}, history points per series: {POINTS}")
    print(f"GET / render: {render * 1e3:.2f} ms, {len(page) / 1024:.0f} KiB; /health JSON "
          f"{health * 1e3:.3f} ms; ratio {render / health:.0f}x")
    print(f"history sample: {sample * 1e6:.0f} us; cpu collection {collect * 1e6:.0f} us; "
          f"ratio {sample / collect:.2f}x")
    print(f"history memory: {held / 1024:.0f} KiB measured "
          f"({history.memory_bytes() / 1024:.0f} KiB in the rings)")


if __name__ == "__main__":
    main()
