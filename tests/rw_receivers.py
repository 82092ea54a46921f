"""Remote write receivers for the tests: the real Prometheus and VictoriaMetrics, and a small
loopback recorder that checks each request against the specification, keeps every sample and
can inject faults (status codes, Retry-After, hangs, connections closed mid-body)."""

from __future__ import annotations

import asyncio
import itertools
import json
import struct
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cramjam

from agent.remote_write import wire
from agent.remote_write.encode import STALE_NAN
from tests.conftest import free_port, require_tool

Series = tuple[tuple[str, str], ...]


def is_stale(value: float) -> bool:
    """Prometheus's stale marker, by its bits (other NaNs are values)."""
    return struct.pack("<d", value) == STALE_NAN


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def until(condition: Callable[[], Any], what: str, timeout: float = 20) -> None:
    """wait_until for a test running on the event loop."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@dataclass
class Fault:
    status: int = 204
    retry_after: str | None = None
    hang: float = 0.0
    close_mid_body: bool = False
    times: int = 1_000_000  # how many requests get this answer before the default (204)


@dataclass
class Recorder:
    """Every sample received, per series, in arrival order; protocol violations collected."""

    samples: dict[Series, list[tuple[int, float]]] = field(default_factory=dict)
    metadata: dict[str, tuple[int, str, str]] = field(default_factory=dict)
    requests: list[dict[str, str]] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    attempts: list[float] = field(default_factory=list)  # every request, answered or not
    violations: list[str] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_fault(self) -> Fault | None:
        with self.lock:
            while self.faults and self.faults[0].times <= 0:
                self.faults.pop(0)
            if not self.faults:
                return None
            self.faults[0].times -= 1
            return self.faults[0]

    def record(self, headers: dict[str, str], body: bytes) -> None:
        for name, expected in (("Content-Encoding", "snappy"),
                               ("Content-Type", "application/x-protobuf"),
                               ("X-Prometheus-Remote-Write-Version", "0.1.0")):
            if headers.get(name) != expected:
                self.violations.append(f"header {name}={headers.get(name)!r}")
        if not headers.get("User-Agent", "").startswith("hostagent/"):
            self.violations.append("no User-Agent")
        request = wire.decode(bytes(cramjam.snappy.decompress_raw(body)))
        with self.lock:
            self.requests.append(headers)
            self.arrivals.append(time.monotonic())
            for entry in request.metadata:
                self.metadata[entry.metric_family_name] = (entry.type, entry.help, entry.unit)
            for ts in request.timeseries:
                labels = tuple((label.name, label.value) for label in ts.labels)
                if list(labels) != sorted(labels) or len({k for k, _ in labels}) != len(labels):
                    self.violations.append(f"labels not sorted or repeated: {labels}")
                stamps = [s.timestamp for s in ts.samples]
                if stamps != sorted(stamps):
                    self.violations.append(f"samples out of order in {labels}")
                self.samples.setdefault(labels, []).extend(
                    (s.timestamp, s.value) for s in ts.samples)

    def total(self) -> int:
        with self.lock:
            return sum(len(v) for v in self.samples.values())

    def points(self) -> set[tuple[Series, int]]:
        """Every (series, timestamp) but stale markers, which receivers' query APIs skip."""
        with self.lock:
            return {(labels, ts) for labels, values in self.samples.items()
                    for ts, value in values if not is_stale(value)}

    def out_of_order(self) -> list[Series]:
        """Series whose samples did not arrive strictly increasing (a duplicate counts)."""
        with self.lock:
            return [labels for labels, values in self.samples.items()
                    if any(b[0] <= a[0] for a, b in itertools.pairwise(values))]


class FaultServer:
    """The recorder behind a real HTTP server on a loopback port."""

    def __init__(self) -> None:
        self.recorder = Recorder()
        recorder = self.recorder

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                recorder.attempts.append(time.monotonic())
                fault = recorder.next_fault()
                if fault is not None and fault.close_mid_body:
                    self.rfile.read(length // 2)
                    self.close_connection = True
                    self.connection.close()
                    return
                body = self.rfile.read(length)
                if fault is not None and fault.hang:
                    time.sleep(fault.hang)
                status = fault.status if fault is not None else 204
                if status == 204:
                    recorder.record(dict(self.headers.items()), body)
                self.send_response(status)
                if fault is not None and fault.retry_after is not None:
                    self.send_header("Retry-After", fault.retry_after)
                reply = b"" if status == 204 else b"injected fault\n"
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/v1/write"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Receiver:
    """A real receiver process that can be stopped and started again on the same port and
    data directory (an outage)."""

    name = ""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data.parent / f"{self.name}.log"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready_path(self) -> str:
        raise NotImplementedError

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.command(), stdout=out, stderr=out)
        wait_until(self._ready, f"{self.name} to start")

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited: {self.log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(self.base + self.ready_path(), timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.proc = None

    def get_json(self, path: str, **params: str) -> Any:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.load(r)

    def points(self, selector: str) -> set[tuple[Series, int]]:
        """Every raw (series, timestamp ms) stored for the selector."""
        raise NotImplementedError


class PrometheusReceiver(Receiver):
    name = "prometheus"

    def command(self) -> list[str]:
        config = self.data.parent / "prometheus-receiver.yml"
        config.write_text("global: {}\n")
        return [require_tool("prometheus"), f"--config.file={config}",
                f"--storage.tsdb.path={self.data}", f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-remote-write-receiver"]

    def ready_path(self) -> str:
        return "/-/ready"

    @property
    def url(self) -> str:
        return f"{self.base}/api/v1/write"

    def points(self, selector: str) -> set[tuple[Series, int]]:
        body = self.get_json("/api/v1/query", query=f"{selector}[1h]")
        out = set()
        for result in body["data"]["result"]:
            labels = tuple(sorted(result["metric"].items()))
            out |= {(labels, round(float(t) * 1000)) for t, _ in result["values"]}
        return out


class VictoriaMetricsReceiver(Receiver):
    name = "victoria-metrics"

    def command(self) -> list[str]:
        return [require_tool("victoria-metrics"), f"-httpListenAddr=127.0.0.1:{self.port}",
                f"-storageDataPath={self.data}", "-loggerLevel=ERROR"]

    def ready_path(self) -> str:
        return "/health"

    @property
    def url(self) -> str:
        return f"{self.base}/api/v1/write"

    def points(self, selector: str) -> set[tuple[Series, int]]:
        urllib.request.urlopen(f"{self.base}/internal/force_flush", timeout=10).read()
        url = f"{self.base}/api/v1/export?{urllib.parse.urlencode({'match[]': selector})}"
        out = set()
        with urllib.request.urlopen(url, timeout=10) as r:
            for line in r.read().decode().splitlines():
                row = json.loads(line)
                labels = tuple(sorted(row["metric"].items()))
                out |= {(labels, int(t)) for t in row["timestamps"]}
        return out
