"""Scrape benchmark: hostagent vs node_exporter (equivalent collectors) vs the floor app.

Same run, same loopback, same Prometheus request headers (OpenMetrics + gzip). Prints serial
p50/p99 latency, throughput at 10 connections (wrk), ratios against the targets, hostagent's
idle RSS and its start->ready time.

usage: python bench/scrape.py [--collectors cpu,memory] [--quick]
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    PROMETHEUS_HEADERS,
    free_port,
    hostagent_command,
    node_exporter_command,
    percentile,
    rss_mb,
    serial_latencies,
    start,
    start_floor_app,
    wait_http,
    wrk_throughput,
)


def fetch_raw(port: int) -> tuple[bytes, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics", headers=PROMETHEUS_HEADERS)
    response = conn.getresponse()
    return response.read(), response.getheader("Content-Type", "")


def measure(name: str, port: int, requests: int, wrk_seconds: int) -> dict[str, float]:
    serial_latencies(port, max(50, requests // 10))  # warm up
    lat = serial_latencies(port, requests)
    figures = {"p50_ms": percentile(lat, 0.5) * 1e3, "p99_ms": percentile(lat, 0.99) * 1e3,
               "rps": wrk_throughput(port, wrk_seconds)}
    print(f"{name:14s} p50 {figures['p50_ms']:7.3f} ms  p99 {figures['p99_ms']:7.3f} ms  "
          f"{figures['rps']:9.0f} req/s", flush=True)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--collectors", help="comma-separated hostagent collectors "
                        "(default: hostagent's default set)")
    parser.add_argument("--quick", action="store_true", help="smoke mode: few requests")
    args = parser.parse_args()
    collectors = args.collectors.split(",") if args.collectors else None
    requests, wrk_seconds = (200, 1) if args.quick else (3000, 10)
    procs = []
    try:
        agent_port = free_port()
        agent = start(hostagent_command(agent_port, collectors))
        procs.append(agent)
        ready_s = wait_http(agent_port, "/-/ready")
        time.sleep(2)
        idle_rss = rss_mb(agent.pid)

        ne_port = free_port()
        procs.append(start(node_exporter_command(ne_port, collectors)))
        wait_http(ne_port, "/metrics")

        gz_body, content_type = fetch_raw(agent_port)
        floor, floor_port = start_floor_app(gz_body, content_type)
        procs.append(floor)

        print(f"collectors: {args.collectors or 'hostagent defaults'}; exposition "
              f"{len(gzip.decompress(gz_body))} bytes ({len(gz_body)} gzipped)")
        agent_f = measure("hostagent", agent_port, requests, wrk_seconds)
        ne_f = measure("node_exporter", ne_port, requests, wrk_seconds)
        floor_f = measure("floor app", floor_port, requests, wrk_seconds)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)

    def line(label: str, value: float, target: str) -> None:
        print(f"  {label:44s} {value:8.3f}   (target {target})")

    print("ratios")
    line("p50 latency hostagent / node_exporter", agent_f["p50_ms"] / ne_f["p50_ms"], "<= 0.1")
    line("throughput hostagent / node_exporter", agent_f["rps"] / ne_f["rps"], ">= 25")
    line("p50 latency hostagent / floor", agent_f["p50_ms"] / floor_f["p50_ms"], "<= 1.3")
    line("p99 latency hostagent / floor", agent_f["p99_ms"] / floor_f["p99_ms"], "<= 1.3")
    line("throughput floor / hostagent", floor_f["rps"] / agent_f["rps"], "<= 1.3")
    print(f"  {'idle RSS (MB)':44s} {idle_rss:8.1f}   (target <= 50)")
    print(f"  {'start -> ready (s)':44s} {ready_s:8.3f}   (target <= 1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
