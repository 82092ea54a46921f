"""process_groups with 1,000 processes on the host: CPU per cycle of hostagent's collector
against the real process-exporter (same grouping config, same run), the agent's memory with the
collector on, and a psutil reader of the same fields beside the direct /proc reader.

    .venv/bin/python bench/processes.py [--procs 1000] [--cycles 20]
"""

from __future__ import annotations

import argparse
import http.client
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import cpu_seconds, free_port, rss_mb, start, wait_http

from agent.collectors.process_groups import ProcessGroupsCollector
from agent.collectors.process_matching import parse_process_names

# Every process in a group named after its command (the most common process-exporter config).
CONFIG = [{"name": "{{.Comm}}", "cmdline": [".+"]}]


def process_exporter_cpu(cycles: int) -> float:
    binary = shutil.which("prometheus-process-exporter")
    if binary is None:
        raise SystemExit("prometheus-process-exporter is not installed")
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as config:
        config.write("process_names:\n  - name: '{{.Comm}}'\n    cmdline: ['.+']\n")
        config.flush()
        port = free_port()
        proc = start([binary, "-config.path", config.name,
                      "-web.listen-address", f"127.0.0.1:{port}"])
        try:
            wait_http(port, "/metrics")
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/metrics")
            conn.getresponse().read()  # the first scrape reads every process's identity
            before = cpu_seconds(proc.pid)
            for _ in range(cycles):
                conn.request("GET", "/metrics")
                conn.getresponse().read()
            return (cpu_seconds(proc.pid) - before) / cycles
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def hostagent_cpu(cycles: int) -> tuple[float, float]:
    """CPU per cycle, and the process's RSS growth in MB over building and running it."""
    before_rss = rss_mb(_self_pid())
    collector = ProcessGroupsCollector(Path("/proc"), Path("/sys"), parse_process_names(CONFIG))
    collector.collect()
    start_cpu = time.process_time()
    for _ in range(cycles):
        collector.collect()
    return (time.process_time() - start_cpu) / cycles, rss_mb(_self_pid()) - before_rss


def psutil_cpu(cycles: int) -> float:
    import psutil

    fields = ["name", "cmdline", "uids", "cpu_times", "memory_info", "io_counters",
              "num_fds", "num_threads", "num_ctx_switches", "status", "create_time", "ppid",
              "memory_full_info"]  # pss and swap, as smaps_rollup; fd limits not included
    list(psutil.process_iter(fields))
    start_cpu = time.process_time()
    for _ in range(cycles):
        list(psutil.process_iter(fields))
    return (time.process_time() - start_cpu) / cycles


def _self_pid() -> int:
    import os

    return os.getpid()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--procs", type=int, default=1000)
    parser.add_argument("--cycles", type=int, default=20)
    args = parser.parse_args()
    sleepers = [subprocess.Popen(["sleep", "600"]) for _ in range(args.procs)]
    try:
        total = len([p for p in Path("/proc").iterdir() if p.name.isdigit()])
        theirs = process_exporter_cpu(args.cycles)
        ours, grew = hostagent_cpu(args.cycles)
        with_psutil = psutil_cpu(args.cycles)
    finally:
        for proc in sleepers:
            proc.kill()
        for proc in sleepers:
            proc.wait()
    print(f"processes on the host: {total}")
    print(f"{'process-exporter CPU per scrape':40s} {theirs * 1e3:8.1f} ms")
    print(f"{'hostagent process_groups CPU per cycle':40s} {ours * 1e3:8.1f} ms")
    print(f"{'psutil reading nearly the same fields':40s} {with_psutil * 1e3:8.1f} ms")
    print(f"ratio hostagent / process-exporter: {ours / theirs:.2f} (target <= 1.0)")
    print(f"memory with the collector on: +{grew:.1f} MB (target <= 10)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
