"""Soak: the agent under everything at once, then back where it started.

A real agent process on loopback, for a bounded time, under together:
- steady scrapes: both formats, one after another, every answer must be 200;
- a reload storm: SIGHUP every half second, the config file alternating between two contents
  (a collector on and off), so every reload applies a change;
- slow readers: waves of clients that ask for /metrics and read nothing (small receive
  buffers), cut off by web.write_timeout, then closed;
- textfile churn: a textfile replaced every second with one of a few hundred kB to a few MB
  of series, sometimes removed.
RSS, open fds and threads are sampled at the start (after a warm-up), at the peak and at the
end (load stopped, the textfile gone and its series out of the exposition). It fails when an
end figure is not back near its start: RSS within --rss-slack MB, fds and threads within a
few (threads start on demand up to the pools' bounds).

usage: python bench/soak.py [--seconds N] [--short]
  --short: the form the test suite runs (about 20 s in all)
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import PROMETHEUS_HEADERS, free_port, wait_http

WRITE_TIMEOUT = 1.0
THREAD_SLACK = 6  # the collector pool (4) and statvfs workers start threads on demand
FD_SLACK = 4


@dataclass
class Figures:
    rss_mb: float
    fds: int
    threads: int


@dataclass
class Result:
    start: Figures
    peak: Figures
    end: Figures
    scrapes: int = 0
    failed: list[str] = field(default_factory=list)
    reloads: int = 0
    slow_readers: int = 0
    textfile_writes: int = 0

    def problems(self, rss_slack: float) -> list[str]:
        out = list(self.failed[:5])
        if self.end.rss_mb > self.start.rss_mb + rss_slack:
            out.append(f"RSS {self.end.rss_mb:.1f} MB at the end, {self.start.rss_mb:.1f} MB "
                       f"at the start (slack {rss_slack:g} MB)")
        if self.end.fds > self.start.fds + FD_SLACK:
            out.append(f"{self.end.fds} fds at the end, {self.start.fds} at the start")
        if self.end.threads > self.start.threads + THREAD_SLACK:
            out.append(f"{self.end.threads} threads at the end, {self.start.threads} at the start")
        return out


def figures(pid: int) -> Figures:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return Figures(int(fields["VmRSS"].split()[0]) / 1024, len(os.listdir(f"/proc/{pid}/fd")),
                   int(fields["Threads"]))


def config_text(textfiles: Path, variant: int) -> str:
    return (f"web:\n  write_timeout: {WRITE_TIMEOUT}\n"
            f"collectors:\n  textfile:\n    directory: {textfiles}\n    interval: 1\n"
            f"  entropy:\n    enabled: {'true' if variant else 'false'}\n")


def textfile(lines: int) -> str:
    return "# HELP soak_value A churned series.\n# TYPE soak_value gauge\n" + "".join(
        f'soak_value{{n="{n}",shard="s{n % 31}"}} {n}.25\n' for n in range(lines))


def scrape(port: int, headers: dict[str, str], path: str = "/metrics") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class Load:
    def __init__(self, pid: int, port: int, config: Path, textfiles: Path, seed: int) -> None:
        self.pid, self.port, self.config, self.textfiles = pid, port, config, textfiles
        self.stop = threading.Event()
        self.random = random.Random(seed)
        self.scrapes = self.reloads = self.slow = self.writes = 0
        self.failed: list[str] = []
        self.peak = figures(pid)

    def scraper(self) -> None:
        formats = [PROMETHEUS_HEADERS, {}]
        while not self.stop.is_set():
            status, _ = scrape(self.port, formats[self.scrapes % 2])
            self.scrapes += 1
            if status != 200:
                self.failed.append(f"scrape answered {status}")
            self.stop.wait(0.1)

    def reloader(self) -> None:
        while not self.stop.wait(0.5):
            self.config.write_text(config_text(self.textfiles, self.reloads % 2))
            os.kill(self.pid, signal.SIGHUP)
            self.reloads += 1

    def slow_readers(self) -> None:
        while not self.stop.is_set():
            wave = []
            for _ in range(20):
                client = socket.socket()
                client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                client.connect(("127.0.0.1", self.port))
                client.sendall(b"GET /metrics HTTP/1.1\r\nHost: soak\r\n\r\n")
                wave.append(client)
            self.slow += len(wave)
            self.stop.wait(WRITE_TIMEOUT * 2)  # cut off by the agent meanwhile
            for client in wave:
                client.close()

    def churn(self) -> None:
        target = self.textfiles / "churn.prom"
        while not self.stop.wait(1.0):
            if self.random.random() < 0.2:
                target.unlink(missing_ok=True)
                continue
            staged = self.textfiles / ".churn.tmp"
            staged.write_text(textfile(self.random.choice([2_000, 8_000, 20_000])))
            staged.rename(target)  # as textfiles are meant to be replaced
            self.writes += 1

    def sampler(self) -> None:
        while not self.stop.wait(0.2):
            with contextlib.suppress(OSError):
                now = figures(self.pid)
                self.peak = Figures(max(self.peak.rss_mb, now.rss_mb),
                                    max(self.peak.fds, now.fds),
                                    max(self.peak.threads, now.threads))


def soak(seconds: float, warmup: float = 3.0, seed: int = 1) -> Result:
    work = Path(tempfile.mkdtemp(prefix="hostagent-soak-"))
    textfiles = work / "textfiles"
    textfiles.mkdir()
    config = work / "config.yml"
    config.write_text(config_text(textfiles, 0))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "--config", str(config),
         "--web.listen-address", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(port, "/-/ready")
        for headers in (PROMETHEUS_HEADERS, {}):  # both formats rendered from now on
            scrape(port, headers)
        time.sleep(warmup)
        start = figures(proc.pid)
        load = Load(proc.pid, port, config, textfiles, seed)
        workers = [threading.Thread(target=fn, daemon=True) for fn in (
            load.scraper, load.reloader, load.slow_readers, load.churn, load.sampler)]
        for worker in workers:
            worker.start()
        time.sleep(seconds)
        load.stop.set()
        for worker in workers:
            worker.join(timeout=30)
        # Back to the start: the churned textfile gone, and its series out of the exposition.
        (textfiles / "churn.prom").unlink(missing_ok=True)
        deadline = time.monotonic() + 20
        while b"soak_value" in scrape(port, {})[1] + scrape(port, PROMETHEUS_HEADERS)[1]:
            if time.monotonic() > deadline:
                raise RuntimeError("the churned series never left the exposition")
            time.sleep(0.2)
        time.sleep(1.0)  # the render after the last change, and its trim
        end = figures(proc.pid)
        if proc.poll() is not None:
            load.failed.append(f"the agent exited with {proc.returncode}")
        return Result(start, load.peak, end, load.scrapes, load.failed, load.reloads, load.slow,
                      load.writes)
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=120.0, help="load time")
    parser.add_argument("--short", action="store_true", help="the test suite's form")
    parser.add_argument("--rss-slack", type=float, default=8.0, help="MB")
    args = parser.parse_args()
    result = soak(12.0 if args.short else args.seconds)
    print(f"load {12.0 if args.short else args.seconds:g} s: {result.scrapes} scrapes, "
          f"{result.reloads} reloads, {result.slow_readers} slow readers, "
          f"{result.textfile_writes} textfile rewrites")
    print(f"  {'':6s} {'RSS MB':>8s} {'fds':>5s} {'threads':>8s}")
    for label, fig in (("start", result.start), ("peak", result.peak), ("end", result.end)):
        print(f"  {label:6s} {fig.rss_mb:8.1f} {fig.fds:5d} {fig.threads:8d}")
    print(f"  end / start RSS {result.end.rss_mb / result.start.rss_mb:.2f}, "
          f"peak / start {result.peak.rss_mb / result.start.rss_mb:.2f}")
    problems = result.problems(args.rss_slack)
    for problem in problems:
        print(f"FAIL: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
