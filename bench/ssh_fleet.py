"""SSH fan-out at fleet scale: one agent process watching 1,000 targets.

Real OpenSSH sshd processes on loopback (16 `ListenAddress` ports each, the most sshd allows),
an unprivileged /bin/sh user (as bench/ssh.py); the agent runs the node module and two checks
at a 60 s interval with its connections kept. Printed, against the same agent with SSH off
(measured first, in the same run):

- seconds until every target is up (logged in, both checks succeeded);
- agent RSS then (after the first round) and --settle seconds later;
- steady-state CPU of the agent over the settle window (% of one core);
- /metrics latency p50/p99 while rounds run (seconds in which the agent used > 20 % of a core)
  and between rounds, against the SSH-off agent; /metrics size, plain and gzipped, and one
  target's /probe body.

--where then runs the worker in process on a slice of the targets under tracemalloc and
prints the memory per kept connection and the top allocation sites.

usage: python bench/ssh_fleet.py [--targets 1000] [--settle 120] [--where 200] [--quick]
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import cpu_seconds, free_port, rss_mb, wait_http  # noqa: E402
from ssh import bench_user  # noqa: E402

from tests.sshd import MAX_PORTS, Sshd, free_ports, user_key  # noqa: E402

CHECKS = [{"name": "loadavg", "command": "cat /proc/loadavg"},
          {"name": "uptime", "command": "cat /proc/uptime", "regex": r"^\d"}]
INTERVAL = 60.0


def ssh_section(spec: dict[str, Any], enabled: bool) -> dict[str, Any]:
    return {"enabled": enabled, "targets": spec["targets"], "user": spec["user"],
            "key_files": [spec["key"]], "known_hosts": spec["known_hosts"],
            "checks": CHECKS,
            "modules": {"login": {"interval": INTERVAL}, "checks": {"interval": INTERVAL},
                        "node": {"enabled": True, "interval": INTERVAL}}}


def get(port: int, path: str, gzipped: bool = False) -> tuple[float, bytes]:
    """(seconds, body) of one GET, a new connection each time as Prometheus's first scrape."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"Accept-Encoding": "gzip"} if gzipped else {})
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"{path}: HTTP {response.status}: {body[:200]!r}")
    finally:
        conn.close()
    return time.perf_counter() - start, body


def count_up(body: bytes, targets: int) -> int:
    """Targets whose login and both checks succeeded in their last round."""
    up, checks = 0, 0
    for line in body.decode().splitlines():
        ok = line.rsplit(" ", 1)[-1] in ("1", "1.0")
        if line.startswith("hostagent_ssh_up{"):
            up += ok
        elif line.startswith("hostagent_ssh_check_success{"):
            checks += ok
    return min(up, checks // len(CHECKS), targets)


class Scraper:
    """Scrapes /metrics every `period` s in a thread; each sample is tagged with the agent's
    CPU share over the second before it (busy: rounds running)."""

    def __init__(self, pid: int, port: int, period: float = 0.25) -> None:
        self.pid, self.port, self.period = pid, port, period
        self.samples: list[tuple[float, float]] = []  # (latency s, agent CPU share)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        history: list[tuple[float, float]] = [(time.monotonic(), cpu_seconds(self.pid))]
        while not self._stop.wait(self.period):
            now, cpu = time.monotonic(), cpu_seconds(self.pid)
            history.append((now, cpu))
            past = next(h for h in reversed(history) if now - h[0] >= 1.0 or h is history[0])
            share = (cpu - past[1]) / max(now - past[0], 1e-3)
            latency, _ = get(self.port, "/metrics")
            self.samples.append((latency, share))
            del history[:-16]

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def quantiles(latencies: list[float]) -> tuple[float, float]:
    if len(latencies) < 2:
        return (latencies[0] if latencies else float("nan"),) * 2
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return statistics.median(latencies), cuts[98]


def run_agent(spec: dict[str, Any], directory: Path, ssh: bool, settle: float
              ) -> dict[str, Any]:
    port = free_port()
    config = directory / f"agent-{ssh}.yml"
    config.write_text(json.dumps({"web": {"listen_address": f"127.0.0.1:{port}"},
                                  "ssh": ssh_section(spec, ssh)}))
    proc = subprocess.Popen([sys.executable, "-m", "agent", "--config", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    targets = len(spec["targets"])
    out: dict[str, Any] = {}
    try:
        start = time.perf_counter()
        wait_http(port, "/-/ready", timeout=120)
        if ssh:
            while True:
                _, body = get(port, "/metrics")
                if count_up(body, targets) >= targets:
                    break
                if time.perf_counter() - start > 600:
                    raise RuntimeError(f"only {count_up(body, targets)} of {targets} up")
                time.sleep(0.5)
        out["up_after"] = time.perf_counter() - start
        out["rss_first"] = rss_mb(proc.pid)
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        with Scraper(proc.pid, port) as scraper:
            time.sleep(settle)
        out["cpu"] = (cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0)
        out["rss_later"] = rss_mb(proc.pid)
        busy = [lat for lat, share in scraper.samples if share > 0.2]
        quiet = [lat for lat, share in scraper.samples if share <= 0.2]
        out["all"] = quantiles([lat for lat, _ in scraper.samples])
        out["busy"], out["quiet"] = quantiles(busy), quantiles(quiet)
        out["busy_n"], out["quiet_n"] = len(busy), len(quiet)
        _, body = get(port, "/metrics")
        _, zipped = get(port, "/metrics", gzipped=True)
        out["size"], out["gzipped"] = len(body), len(zipped)
        if ssh:
            _, probe = get(port, f"/probe?target={spec['targets'][0]}")
            out["probe"] = len(probe)
            if count_up(body, targets) < targets:
                raise RuntimeError("targets went down during the settle window")
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return out


def where(spec: dict[str, Any], count: int) -> None:
    """Memory per kept connection and its top allocation sites (worker in process)."""
    import asyncio
    import tracemalloc

    from agent import runloop
    from agent.config import SshConfig
    from agent.exposition.registry import Registry
    from agent.ssh import quiet_asyncssh, tune_gc
    from agent.ssh.worker import SshWorker

    section = ssh_section(spec, True)
    section["targets"] = spec["targets"][:count]
    config = SshConfig.model_validate(section)

    async def run() -> None:
        quiet_asyncssh()
        tune_gc()
        worker = SshWorker(config, Registry())
        await worker.start(rounds=False)
        await worker.run_once()  # imports, caches and one-off set-up out of the way
        for name in [t.name for t in worker.targets()][count // 2:]:
            await worker._pool.close(name)
        await asyncio.sleep(1)
        tracemalloc.start(8)
        before = tracemalloc.take_snapshot()
        start = time.process_time()
        await worker.run_once()  # half reconnect, half reuse
        cpu_round = time.process_time() - start
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
        opened = count - count // 2
        print(f"\nin process, {count} targets ({opened} connections opened under "
              f"tracemalloc): {grown / opened / 1024:.1f} KiB traced per new connection and "
              f"its snapshot; {cpu_round:.2f} s CPU for the round (tracemalloc on)")
        print("top allocation sites (growth over the round, by file):")
        for stat in after.compare_to(before, "filename")[:12]:
            print(f"  {stat.size_diff / 1024:>9.0f} KiB  {stat.count_diff:>8} blocks  "
                  f"{stat.traceback[0].filename.replace(str(ROOT) + '/', '')}")
        await worker.stop()

    runloop.run(run())


def start_servers(directory: Path, count: int, user: str) -> tuple[list[Sshd], dict[str, Any]]:
    key = user_key(directory)
    ports = free_ports(count)
    servers: list[Sshd] = []
    for index in range(0, len(ports), MAX_PORTS):
        sshd = Sshd(directory / f"sshd{index // MAX_PORTS}", [key.public],
                    ports[index:index + MAX_PORTS], user=user,
                    max_startups=f"{count * 2}:30:{count * 4}")
        sshd.directory.chmod(0o755)
        (sshd.directory / "authorized_keys").chmod(0o644)
        servers.append(sshd)
        sshd.start()
    known_hosts = directory / "known_hosts"
    known_hosts.write_text("".join(line + "\n" for s in servers
                                   for line in s.known_hosts_lines()))
    return servers, {"targets": [f"127.0.0.1:{port}" for port in ports], "user": user,
                     "key": str(key.path), "known_hosts": str(known_hosts)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--settle", type=float, default=120.0,
                        help="seconds after every target is up (RSS again, CPU, scrapes)")
    parser.add_argument("--where", type=int, default=200,
                        help="targets for the in-process tracemalloc pass (0: skip)")
    parser.add_argument("--quick", action="store_true", help="48 targets, 10 s, no --where")
    args = parser.parse_args()
    if args.quick:
        args.targets, args.settle, args.where = 48, 10.0, 0

    user, note = bench_user()
    directory = Path(tempfile.mkdtemp(prefix="hostagent-ssh-fleet-"))
    directory.chmod(0o755)  # sshd reads authorized_keys as the login user
    servers: list[Sshd] = []
    try:
        servers, spec = start_servers(directory, args.targets, user)
        print(f"{args.targets} targets on {len(servers)} sshd processes; node module + "
              f"{len(CHECKS)} checks every {INTERVAL:g} s, connections kept; {note}")
        off = run_agent(spec, directory, ssh=False, settle=min(args.settle, 30.0))
        on = run_agent(spec, directory, ssh=True, settle=args.settle)
        print(f"\nevery target up {on['up_after']:.1f} s after start")
        print(f"{'figure':<34}{'SSH off':>12}{'SSH on':>12}{'on / off':>10}")
        rows = [("RSS after the first round, MB", "rss_first", 1),
                (f"RSS {args.settle:g} s later, MB", "rss_later", 1),
                ("CPU, % of a core", "cpu", 100)]
        for label, key, scale in rows:
            print(f"{label:<34}{off[key] * scale:>12.1f}{on[key] * scale:>12.1f}"
                  f"{on[key] / off[key]:>9.1f}x")
        for label, key in (("/metrics p50, ms", 0), ("/metrics p99, ms", 1)):
            print(f"{label:<34}{off['all'][key] * 1e3:>12.2f}{on['all'][key] * 1e3:>12.2f}"
                  f"{on['all'][key] / off['all'][key]:>9.1f}x")
        print(f"  SSH on, while rounds run ({on['busy_n']} scrapes): p50 "
              f"{on['busy'][0] * 1e3:.2f} ms, p99 {on['busy'][1] * 1e3:.2f} ms; between rounds "
              f"({on['quiet_n']}): p50 {on['quiet'][0] * 1e3:.2f} ms, p99 "
              f"{on['quiet'][1] * 1e3:.2f} ms")
        print(f"/metrics size: {off['size'] / 1e3:.1f} kB off, {on['size'] / 1e3:.1f} kB on "
              f"({on['gzipped'] / 1e3:.1f} kB gzipped); /probe of one target "
              f"{on['probe'] / 1e3:.1f} kB")
        if args.where:
            where(spec, min(args.where, args.targets))
    finally:
        for sshd in servers:
            sshd.kill()
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
