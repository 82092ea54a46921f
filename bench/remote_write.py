"""Remote write: hostagent's push against vmagent and Prometheus in agent mode, same run.

A source hostagent serves /metrics; vmagent and Prometheus (--enable-feature=agent) scrape it
every second and remote-write to VictoriaMetrics, while a second hostagent with the same
collectors pushes the same host data itself. Each sender goes through its own loopback proxy
in front of the same VictoriaMetrics, which counts wire bytes and samples, and injects the
outage. Figures:

- CPU per 1,000 samples delivered in the steady phase (hostagent: the pushing agent's CPU less
  that of a twin agent with the same collectors that neither pushes nor is scraped, i.e. what
  push adds to collection; the peers: their whole CPU, scraping included, since that is what
  they cost to move the same data);
- bytes on the wire per sample;
- after an outage: the time to drain the backlog and the samples per second drained;
- samples lost when the sender is killed with SIGKILL in the middle of the outage and restarted
  (the scrape/collection timestamps of node_load1 between the outage start and the kill that
  never reach the receiver).

    python bench/remote_write.py [--steady 15] [--outage 12] [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cramjam
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.remote_write import wire
from bench.common import ROOT, free_port, wait_http

COLLECTORS = ["cpu", "memory", "load", "netdev", "diskstats", "filesystem", "vmstat"]
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Tap:
    """One sender's proxy: counts, remembers node_load1 timestamps, forwards to VM."""

    target: str
    outage: bool = False
    body_bytes: int = 0
    samples: int = 0
    load_stamps: set[int] = field(default_factory=set)
    arrivals: list[tuple[float, int]] = field(default_factory=list)  # (time, samples)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def serve(self) -> int:
        tap = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if tap.outage:
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                tap.record(body)
                request = urllib.request.Request(tap.target, data=body, method="POST",
                                                 headers=dict(self.headers.items()))
                try:
                    with urllib.request.urlopen(request, timeout=10) as r:
                        status = r.status
                except urllib.error.HTTPError as exc:
                    status = exc.code
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return int(server.server_address[1])

    def record(self, body: bytes) -> None:
        raw = bytes(cramjam.snappy.decompress_raw(body))
        request = wire.decode(raw)
        n = 0
        stamps = []
        for ts in request.timeseries:
            n += len(ts.samples)
            if any(lbl.name == "__name__" and lbl.value == "node_load1" for lbl in ts.labels):
                stamps += [s.timestamp for s in ts.samples]
        with self.lock:
            self.body_bytes += len(body)
            self.samples += n
            self.load_stamps.update(stamps)
            self.arrivals.append((time.monotonic(), n))


def cpu_seconds(pid: int) -> float:
    """On-CPU time of every thread, in nanoseconds from schedstat: /proc/PID/stat counts
    10 ms ticks, too coarse for the difference of two agents over a short window."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # the thread ended meanwhile
    if total:
        return total / 1e9
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Sender:
    def __init__(self, name: str, command: list[str], work: Path) -> None:
        self.name = name
        self.command = command
        self.work = work
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.work / f"{self.name}.log").open("ab")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this tree's agent, wherever run from
        self.proc = subprocess.Popen(self.command, stdout=log, stderr=log, cwd=self.work, env=env)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def cpu(self) -> float:
        assert self.proc is not None
        return cpu_seconds(self.proc.pid)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steady", type=float, default=15.0)
    parser.add_argument("--outage", type=float, default=12.0)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.steady, args.outage = 5.0, 6.0
    work = Path(tempfile.mkdtemp(prefix="rw-bench-"))
    vm_port = free_port()
    vm = subprocess.Popen(["victoria-metrics", f"-httpListenAddr=127.0.0.1:{vm_port}",
                           f"-storageDataPath={work / 'vm'}", "-loggerLevel=ERROR"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(vm_port, "/health")
    vm_url = f"http://127.0.0.1:{vm_port}/api/v1/write"
    taps = {name: Tap(vm_url) for name in ("hostagent", "vmagent", "prometheus")}
    urls = {name: f"http://127.0.0.1:{tap.serve()}/api/v1/write" for name, tap in taps.items()}

    collector_flags = ["--collector.disable-defaults", *(f"--collector.{c}" for c in COLLECTORS)]
    intervals = {"collectors": {c: {"interval": 1} for c in COLLECTORS}}
    source_port = free_port()
    (work / "source.yml").write_text(yaml.safe_dump(intervals))
    source = Sender("source", [sys.executable, "-m", "agent", "--config",
                               str(work / "source.yml"), "--web.listen-address",
                               f"127.0.0.1:{source_port}", *collector_flags], work)
    # Collects and renders as the pushing agent does, with nobody scraping it: the baseline.
    twin = Sender("twin", [sys.executable, "-m", "agent", "--config", str(work / "source.yml"),
                           "--web.listen-address", f"127.0.0.1:{free_port()}",
                           *collector_flags], work)
    push_config = {**intervals, "remote_write": {
        "directory": str(work / "hostagent-queue"),
        "external_labels": {"sender": "hostagent"},
        "endpoints": [{"url": urls["hostagent"], "name": "vm",
                       "queue_config": {"batch_send_deadline": 1, "max_backoff": 1}}]}}
    (work / "push.yml").write_text(yaml.safe_dump(push_config))
    pusher = Sender("hostagent", [sys.executable, "-m", "agent", "--config",
                                  str(work / "push.yml"), "--web.listen-address",
                                  f"127.0.0.1:{free_port()}", *collector_flags], work)
    scrape = {"scrape_interval": "1s", "scrape_timeout": "1s"}
    job = {"job_name": "hostagent", "static_configs": [{"targets": [f"127.0.0.1:{source_port}"]}]}
    (work / "vmagent.yml").write_text(yaml.safe_dump({"global": scrape, "scrape_configs": [job]}))
    vmagent = Sender("vmagent", [
        "vmagent", f"-promscrape.config={work / 'vmagent.yml'}",
        f"-remoteWrite.url={urls['vmagent']}",
        f"-remoteWrite.tmpDataPath={work / 'vmagent-queue'}", "-remoteWrite.label=sender=vmagent",
        f"-httpListenAddr=127.0.0.1:{free_port()}", "-loggerLevel=ERROR"], work)
    (work / "prom-agent.yml").write_text(yaml.safe_dump({
        "global": {**scrape, "external_labels": {"sender": "prometheus"}},
        "scrape_configs": [job],
        "remote_write": [{"url": urls["prometheus"],
                          "queue_config": {"batch_send_deadline": "1s", "max_backoff": "1s"}}]}))
    prometheus = Sender("prometheus", [
        "prometheus", "--enable-feature=agent", f"--config.file={work / 'prom-agent.yml'}",
        f"--storage.agent.path={work / 'prom-agent'}",
        f"--web.listen-address=127.0.0.1:{free_port()}"], work)
    senders = {"hostagent": pusher, "vmagent": vmagent, "prometheus": prometheus}
    everyone = [source, twin, *senders.values()]
    try:
        for s in everyone:
            s.start()
        wait_http(source_port, "/-/ready")
        time.sleep(3)  # warm-up: first scrapes, first requests

        # Steady phase
        cpu0 = {s.name: s.cpu() for s in everyone}
        sent0 = {n: (t.samples, t.body_bytes) for n, t in taps.items()}
        time.sleep(args.steady)
        cpu1 = {s.name: s.cpu() for s in everyone}
        sent1 = {n: (t.samples, t.body_bytes) for n, t in taps.items()}
        steady = {}
        for name in senders:
            samples = sent1[name][0] - sent0[name][0]
            wire_bytes = sent1[name][1] - sent0[name][1]
            cpu = cpu1[name] - cpu0[name]
            if name == "hostagent":
                cpu -= cpu1["twin"] - cpu0["twin"]
            steady[name] = (samples, cpu * 1e6 / max(samples, 1),  # ms per 1,000 samples
                            wire_bytes / max(samples, 1))

        # Outage, with every sender killed half-way through and restarted
        outage_start = int(time.time() * 1000)
        for tap in taps.values():
            tap.outage = True
        time.sleep(args.outage / 2)
        kill_at = int(time.time() * 1000)
        for s in senders.values():
            s.kill()
        for s in senders.values():
            s.start()
        time.sleep(args.outage / 2)
        backlog = {n: t.samples for n, t in taps.items()}
        recovered = time.monotonic()
        recovered_ms = int(time.time() * 1000)
        for tap in taps.values():
            tap.outage = False
        # Caught up: a sample taken after the recovery arrived (each sender sends in order).
        drain: dict[str, tuple[float, float]] = {}
        while time.monotonic() < recovered + 30 and len(drain) < len(taps):
            time.sleep(0.1)
            for name, tap in taps.items():
                with tap.lock:
                    if name not in drain and max(tap.load_stamps, default=0) >= recovered_ms:
                        elapsed = time.monotonic() - recovered
                        drain[name] = (elapsed, (tap.samples - backlog[name]) / elapsed)
        time.sleep(3)
        lost = {}
        for name, tap in taps.items():
            expected = (kill_at - outage_start) / 1000  # one node_load1 per second
            got = sum(1 for t in tap.load_stamps if outage_start <= t < kill_at)
            lost[name] = max(0.0, expected - got)
    finally:
        for s in everyone:
            s.stop()
        vm.terminate()
        vm.wait()
        shutil.rmtree(work, ignore_errors=True)

    print(f"{'sender':<12} {'samples':>8} {'CPU ms/1k samples':>18} {'wire B/sample':>14} "
          f"{'drain s':>8} {'drain samples/s':>16} {'lost on SIGKILL (s of node_load1)':>34}")
    for name in senders:
        samples, cpu, per_sample = steady[name]
        elapsed, rate = drain.get(name, (float("nan"), float("nan")))
        print(f"{name:<12} {samples:>8} {cpu:>18.2f} {per_sample:>14.2f} {elapsed:>8.1f} "
              f"{rate:>16.0f} {lost[name]:>34.0f}")
    h = steady["hostagent"]
    for peer in ("vmagent", "prometheus"):
        p = steady[peer]
        print(f"ratio hostagent/{peer}: CPU per sample {h[1] / max(p[1], 1e-9):.2f}, "
              f"wire bytes per sample {h[2] / max(p[2], 1e-9):.2f}")


if __name__ == "__main__":
    main()
