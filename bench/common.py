"""Shared helpers for the benchmarks: loopback processes, readiness, scrapes, figures."""

from __future__ import annotations

import gzip
import http.client
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agent.collectors.catalog import BY_NAME, FilesystemSettings

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
              "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_http(port: int, path: str, timeout: float = 20.0) -> float:
    """Poll until path answers 200; returns the seconds it took."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return time.perf_counter() - start
        except OSError:
            pass
        time.sleep(0.005)
    raise RuntimeError(f"port {port} never answered {path}")


def start(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_floor_app(gz_body: bytes, content_type: str) -> tuple[subprocess.Popen[bytes], int]:
    """The floor app serving the same exposition bytes (plain and gzipped), once it answers."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="hostagent-floor-") as directory:
        plain, gz = Path(directory) / "plain", Path(directory) / "gz"
        plain.write_bytes(gzip.decompress(gz_body))
        gz.write_bytes(gz_body)
        proc = start([sys.executable, str(Path(__file__).parent / "floor_app.py"), str(port),
                      str(plain), str(gz), content_type])
        wait_http(port, "/metrics")  # it has read both files by then
    return proc, port


def hostagent_command(port: int, collectors: list[str] | None) -> list[str]:
    args = [sys.executable, "-m", "agent", "--web.listen-address", f"127.0.0.1:{port}"]
    if collectors is not None:
        args += ["--collector.disable-defaults", *(f"--collector.{c}" for c in collectors)]
    return args


def node_exporter_collectors() -> set[str]:
    """The collectors the installed node_exporter has, read off its --help (newer ones that
    hostagent declares, such as dmmultipath or watchdog, would make it refuse to start)."""
    usage = subprocess.run(["prometheus-node-exporter", "--help"], capture_output=True,
                           text=True, timeout=30)
    return set(re.findall(r"--collector\.(\w+) +Enable the", usage.stdout + usage.stderr))


def node_exporter_command(port: int, collectors: list[str] | None,
                          own_defaults: bool = False) -> list[str]:
    """node_exporter restricted to the equivalents of hostagent's collectors (all of
    hostagent's host collectors when None), or with its own full default set. Both use
    hostagent's filesystem and netdev defaults, which Debian's build changes."""
    fs = FilesystemSettings()
    args = ["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{port}",
            f"--collector.filesystem.mount-points-exclude={fs.mount_points_exclude}",
            f"--collector.filesystem.fs-types-exclude={fs.fs_types_exclude}",
            "--collector.netdev.device-exclude="]
    if not own_defaults:
        names = [n for n, d in BY_NAME.items() if d.node_exporter] if collectors is None \
            else collectors
        has = node_exporter_collectors()
        args.append("--collector.disable-defaults")
        args += [f"--collector.{n}" for n in names
                 if n in BY_NAME and BY_NAME[n].node_exporter and n in has]
    return args


def serial_latencies(port: int, count: int) -> list[float]:
    """Per-request seconds over one keep-alive connection, body fully read."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    out = []
    for _ in range(count):
        begin = time.perf_counter()
        conn.request("GET", "/metrics", headers=PROMETHEUS_HEADERS)
        response = conn.getresponse()
        response.read()
        out.append(time.perf_counter() - begin)
        if response.status != 200:
            raise RuntimeError(f"status {response.status}")
    conn.close()
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def wrk_throughput(port: int, seconds: int, connections: int = 10) -> float:
    headers = [arg for k, v in PROMETHEUS_HEADERS.items() for arg in ("-H", f"{k}: {v}")]
    result = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", *headers,
         f"http://127.0.0.1:{port}/metrics"],
        capture_output=True, text=True, timeout=seconds + 30, check=True)
    match = re.search(r"Requests/sec:\s+([\d.]+)", result.stdout)
    if match is None or "Non-2xx" in result.stdout:
        raise RuntimeError(f"wrk failed: {result.stdout}")
    return float(match.group(1))


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else float("nan")


def cpu_seconds(pid: int) -> float:
    """User+system CPU seconds of a process, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scrape_cpu(pid: int, port: int, cycles: int, warm_up: int = 5,
               timeout: float = 10) -> tuple[float, bytes]:
    """(CPU seconds per scrape of the process pid serving /metrics on port, asked as
    Prometheus asks but uncompressed, after warm_up scrapes; the last warm-up body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {**PROMETHEUS_HEADERS, "Accept-Encoding": "identity"}
    body = b""
    for _ in range(warm_up):
        conn.request("GET", "/metrics", headers=headers)
        body = conn.getresponse().read()
    before = cpu_seconds(pid)
    for _ in range(cycles):
        conn.request("GET", "/metrics", headers=headers)
        conn.getresponse().read()
    conn.close()
    return (cpu_seconds(pid) - before) / cycles, body
