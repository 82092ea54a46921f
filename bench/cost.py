"""What the agent costs while it runs, against node_exporter measured in the same run.

1. CPU per hour: hostagent on its defaults and node_exporter on its own defaults, started
   together and each scraped every 15 s as Prometheus does (OpenMetrics Accept, gzip) over the
   same window; CPU is the sum of every thread's run time (/proc/PID/task/*/schedstat, ns), so
   a few milliseconds a second are resolved, where clock ticks are 10 ms.
2. Idle floor: hostagent with one collector (cpu) and no scrapes, over the same window.
3. Idle RSS of the default agent once ready.
4. Under load: a cold burst (200 concurrent scrapes the moment /-/ready says 200: any 503?),
   then 200 keep-alive connections with wrk against the agent and against the floor app
   (bare aiohttp + uvloop serving the same bytes): p50, p99, max.

usage: python bench/cost.py [--window SECONDS] [--quick] [--baseline CHECKOUT]

--baseline runs a second default agent from another checkout (e.g. `git worktree add /tmp/old
COMMIT`) in the same window and scrape cycle, and prints this tree's CPU against it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    PROMETHEUS_HEADERS,
    free_port,
    hostagent_command,
    node_exporter_command,
    rss_mb,
    start,
    start_floor_app,
    wait_http,
)

SCRAPE_INTERVAL = 15.0


def run_ns(pid: int) -> int:
    """CPU nanoseconds of every live thread of a process."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):  # the thread just exited
            total += int((task / "schedstat").read_text().split()[0])
    return total


def scrape(conn: http.client.HTTPConnection) -> int:
    """One scrape on conn, left open for the next as Prometheus's client does (it keeps an idle
    connection 5 minutes); if the server closed it while idle, again on a new one."""
    for attempt in range(2):
        try:
            conn.request("GET", "/metrics", headers=PROMETHEUS_HEADERS)
            response = conn.getresponse()
            response.read()
            return response.status
        except ConnectionError:  # RemoteDisconnected among them
            conn.close()
            if attempt:
                raise
    raise AssertionError("unreachable")


def scraper(conns: list[http.client.HTTPConnection], stop: threading.Event,
            failures: list[str]) -> None:
    """Every 15 s, one scrape on each connection."""
    while not stop.is_set():
        for conn in conns:
            if (status := scrape(conn)) != 200:
                failures.append(f"port {conn.port}: {status}")
        stop.wait(SCRAPE_INTERVAL)


async def burst(port: int, clients: int) -> dict[int, int]:
    """clients concurrent scrapes at once; answers by status."""
    statuses: dict[int, int] = {}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def one() -> None:
            async with session.get(f"http://127.0.0.1:{port}/metrics",
                                   headers=PROMETHEUS_HEADERS) as response:
                await response.read()
                statuses[response.status] = statuses.get(response.status, 0) + 1

        await asyncio.gather(*(one() for _ in range(clients)))
    return statuses


def cold_burst(clients: int) -> dict[int, int]:
    port = free_port()
    proc = start(hostagent_command(port, None))
    try:
        wait_http(port, "/-/ready")
        return asyncio.run(burst(port, clients))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk_latency(port: int, seconds: int, connections: int) -> dict[str, float]:
    headers = [arg for k, v in PROMETHEUS_HEADERS.items() for arg in ("-H", f"{k}: {v}")]
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", *headers,
         f"http://127.0.0.1:{port}/metrics"],
        capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")

    def ms(pattern: str) -> float:
        match = re.search(pattern + r"\s+([\d.]+)(us|ms|s)\b", out)
        if match is None:
            raise RuntimeError(f"no {pattern!r} in wrk output:\n{out}")
        return float(match.group(1)) * _MS[match.group(2)]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return {"p50": ms(r"\n\s+50%"), "p99": ms(r"\n\s+99%"),
            "max": ms(r"Latency\s+[\d.]+\w+\s+[\d.]+\w+"), "rps": float(rps.group(1)) if rps else 0}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--window", type=float, default=60.0, help="CPU window, seconds")
    parser.add_argument("--quick", action="store_true", help="smoke run: short windows")
    parser.add_argument("--baseline", type=Path, help="another checkout's agent, same window")
    args = parser.parse_args()
    window, wrk_seconds = (16.0, 2) if args.quick else (args.window, 10)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        agent_port, ne_port, one_port = free_port(), free_port(), free_port()
        agent = start(hostagent_command(agent_port, None))
        node_exporter = start(node_exporter_command(ne_port, None, own_defaults=True))
        one = start(hostagent_command(one_port, ["cpu"]))
        procs += [agent, node_exporter, one]
        scraped = [agent_port, ne_port]
        baseline = None
        if args.baseline is not None:
            baseline_port = free_port()
            baseline = subprocess.Popen(
                hostagent_command(baseline_port, None), cwd=args.baseline,
                env={**os.environ, "PYTHONPATH": str(args.baseline)},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(baseline)
            wait_http(baseline_port, "/-/ready")
            scraped.append(baseline_port)
        wait_http(agent_port, "/-/ready")
        wait_http(one_port, "/-/ready")
        wait_http(ne_port, "/metrics")
        conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for port in scraped]
        for conn in conns:  # the first scrape warms caches on every side
            scrape(conn)
        time.sleep(2)
        idle_rss = rss_mb(agent.pid)

        stop, failures = threading.Event(), []
        begin = {p.pid: run_ns(p.pid) for p in procs}
        started = time.monotonic()
        thread = threading.Thread(target=scraper, args=(conns, stop, failures))
        thread.start()
        time.sleep(window)
        elapsed = time.monotonic() - started
        used = {p.pid: (run_ns(p.pid) - begin[p.pid]) / 1e6 / elapsed for p in procs}
        stop.set()
        thread.join()
        for conn in conns:
            conn.close()
        if failures:
            raise RuntimeError(f"scrapes failed: {failures}")
        agent_rss_after = rss_mb(agent.pid)

        conn = http.client.HTTPConnection("127.0.0.1", agent_port, timeout=10)
        conn.request("GET", "/metrics", headers=PROMETHEUS_HEADERS)
        response = conn.getresponse()
        gz_body, content_type = response.read(), response.getheader("Content-Type", "")
        conn.close()
        for proc in (node_exporter, one, *([baseline] if baseline else [])):
            proc.terminate()
            proc.wait(timeout=10)

        burst_statuses = cold_burst(200)

        floor, floor_port = start_floor_app(gz_body, content_type)
        procs.append(floor)
        agent_load = wrk_latency(agent_port, wrk_seconds, 200)
        floor_load = wrk_latency(floor_port, wrk_seconds, 200)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)

    agent_ms, ne_ms, one_ms = used[agent.pid], used[node_exporter.pid], used[one.pid]
    print(f"window {elapsed:.0f} s, scrapes every {SCRAPE_INTERVAL:g} s (OpenMetrics, gzip)")
    print(f"  {'':34s} {'ms/s':>8s} {'CPU s/hour':>11s}")
    for label, value in (("hostagent, defaults", agent_ms),
                         ("node_exporter, its defaults", ne_ms),
                         ("hostagent, cpu only, no scrapes", one_ms)):
        print(f"  {label:34s} {value:8.3f} {value * 3.6:11.2f}")
    print(f"  ratio hostagent / node_exporter     {agent_ms / ne_ms:8.2f}   (target <= 1)")
    print(f"  hostagent, one collector idle       {one_ms:8.3f}   ms/s (target < 1)")
    if baseline is not None:
        base_ms = used[baseline.pid]
        print(f"  hostagent at {args.baseline}, defaults: {base_ms:.3f} ms/s; this tree / it "
              f"{agent_ms / base_ms:.2f}, its ratio to node_exporter {base_ms / ne_ms:.2f}")
    print(f"idle RSS {idle_rss:.1f} MB (target <= 50), after the window {agent_rss_after:.1f} MB")
    print(f"cold burst of 200 right after ready: {dict(sorted(burst_statuses.items()))} "
          "(target: no 503)")
    print(f"200 keep-alive connections, {wrk_seconds} s each (ms):")
    for label, figures in (("hostagent", agent_load), ("floor app", floor_load)):
        print(f"  {label:10s} p50 {figures['p50']:8.2f}  p99 {figures['p99']:8.2f}  "
              f"max {figures['max']:8.2f}  {figures['rps']:8.0f} req/s")
    print(f"  p99 hostagent / floor {agent_load['p99'] / floor_load['p99']:.2f} (target <= 1.5); "
          f"max / p50 hostagent {agent_load['max'] / agent_load['p50']:.1f}, "
          f"floor {floor_load['max'] / floor_load['p50']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
