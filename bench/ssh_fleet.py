"""SSH fan-out at fleet scale: one agent process watching 1,000 targets.

Real OpenSSH sshd processes on loopback (16 `ListenAddress` ports each, the most sshd allows),
an unprivileged /bin/sh user (as bench/ssh.py); the agent runs the node module and two checks
at a 60 s interval with its connections kept. Printed, against the same agent with SSH off,
run side by side (and, for /metrics latency, also against an SSH-off agent serving as many
bytes: a textfile holding the SSH agent's hostagent_ssh_* families, renamed):

- seconds until every target is up (logged in, both checks succeeded);
- RSS then (after the first round) and --settle seconds later: the agent's process, its SSH
  worker process and both together (and their PSS together: pages they share count once);
- steady-state CPU over the settle window (% of one core), of each process and together;
- /metrics latency p50/p99 while rounds run (seconds in which the agent and its worker used
  > 20 % of a core) and between rounds, against both SSH-off agents; /metrics size, plain
  and gzipped, and one target's /probe body.

--where then runs the worker in process on a slice of the targets under tracemalloc and
prints the memory per kept connection and the top allocation sites.

usage: python bench/ssh_fleet.py [--targets 1000] [--settle 120] [--where 200] [--quick]
                                [--max-in-flight 64]
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
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
from ssh import bench_user, start_servers, worker_pids  # noqa: E402

from tests.sshd import Sshd  # noqa: E402

CHECKS = [{"name": "loadavg", "command": "cat /proc/loadavg"},
          {"name": "uptime", "command": "cat /proc/uptime", "regex": r"^\d"}]
INTERVAL = 60.0


def ssh_section(spec: dict[str, Any], enabled: bool) -> dict[str, Any]:
    return {"enabled": enabled, "targets": spec["targets"], "user": spec["user"],
            "key_files": [spec["key"]], "known_hosts": spec["known_hosts"],
            "checks": CHECKS, "max_in_flight": spec.get("max_in_flight", 64),
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


def pss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    match = re.search(r"^Pss:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) / 1024 if match else float("nan")


def cpu_of(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


class Scraper:
    """Scrapes /metrics of every agent every `period` s in a thread (in rotating order); each
    set is tagged with the SSH agent's CPU share over the second before it (above 20 % of a
    core: its rounds are running)."""

    def __init__(self, busy_pids: list[int], ports: list[int], period: float = 0.25
                 ) -> None:
        self.pids, self.ports, self.period = busy_pids, ports, period
        self.samples: list[tuple[float, ...]] = []  # (seconds of each port..., CPU share)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        history: list[tuple[float, float]] = [(time.monotonic(), cpu_of(self.pids))]
        while not self._stop.wait(self.period):
            now, cpu = time.monotonic(), cpu_of(self.pids)
            history.append((now, cpu))
            past = next(h for h in reversed(history) if now - h[0] >= 1.0 or h is history[0])
            share = (cpu - past[1]) / max(now - past[0], 1e-3)
            turn = len(self.samples) % len(self.ports)
            order = self.ports[turn:] + self.ports[:turn]
            took = {port: get(port, "/metrics")[0] for port in order}
            self.samples.append((*(took[port] for port in self.ports), share))
            del history[:-16]

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def gc_pauses(body: bytes) -> dict[str, tuple[float, float]]:
    """(collections, seconds) per generation over the agent's life, from its /metrics."""
    found: dict[str, list[float]] = {}
    for line in body.decode().splitlines():
        for part, index in (("_count{", 0), ("_sum{", 1)):
            if line.startswith("hostagent_gc_pause_seconds" + part):
                generation = line.split('generation="', 1)[1].split('"', 1)[0]
                found.setdefault(generation, [0.0, 0.0])[index] = float(line.rsplit(" ", 1)[1])
    return {generation: (count, total) for generation, (count, total) in found.items()}


def quantiles(latencies: list[float]) -> tuple[float, float]:
    if len(latencies) < 2:
        return (latencies[0] if latencies else float("nan"),) * 2
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return statistics.median(latencies), cuts[98]


def start_agent(spec: dict[str, Any], directory: Path, ssh: bool, name: str,
                textfiles: Path | None = None) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    config = directory / f"agent-{name}.yml"
    settings: dict[str, Any] = {"web": {"listen_address": f"127.0.0.1:{port}"},
                                "ssh": ssh_section(spec, ssh)}
    if textfiles is not None:
        settings["collectors"] = {"textfile": {"directory": str(textfiles), "interval": 5}}
    config.write_text(json.dumps(settings))
    return subprocess.Popen([sys.executable, "-m", "agent", "--config", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=ROOT), port


def same_size(on_port: int, same_port: int, textfiles: Path) -> None:
    """Gives the `same` agent a /metrics of the SSH agent's size and shape: its hostagent_ssh_*
    families, renamed, as a textfile."""
    _, body = get(on_port, "/metrics")
    lines = [line.replace("hostagent_ssh_", "bench_copy_ssh_")
             for line in body.decode().splitlines() if "hostagent_ssh_" in line]
    (textfiles / "copy.prom").write_text("\n".join(lines) + "\n")
    deadline = time.monotonic() + 120
    while len(get(same_port, "/metrics")[1]) < 0.95 * len(body):
        if time.monotonic() > deadline:
            raise RuntimeError("the textfile did not reach the SSH-off agent's /metrics")
        time.sleep(0.5)


def run_agents(spec: dict[str, Any], directory: Path, settle: float
               ) -> dict[str, dict[str, Any]]:
    """The agent with SSH off, the same with SSH off and a textfile making its /metrics as
    large as the SSH agent's (same families, renamed), and the agent with SSH on, run side by
    side: the SSH-off ones see the same machine (sshd forking sessions on the same CPUs)
    without the rounds; the second serves as many bytes as the SSH agent."""
    targets = len(spec["targets"])
    textfiles = directory / "textfiles"
    textfiles.mkdir()
    agents = {"off": start_agent(spec, directory, False, "off"),
              "same": start_agent(spec, directory, False, "same", textfiles),
              "on": start_agent(spec, directory, True, "on")}
    out: dict[str, dict[str, Any]] = {key: {} for key in agents}
    try:
        start = time.perf_counter()
        for _, port in agents.values():
            wait_http(port, "/-/ready", timeout=120)
        on_port = agents["on"][1]
        while True:
            _, body = get(on_port, "/metrics")
            if count_up(body, targets) >= targets:
                break
            if time.perf_counter() - start > 600:
                raise RuntimeError(f"only {count_up(body, targets)} of {targets} up")
            time.sleep(0.5)
        out["on"]["up_after"] = time.perf_counter() - start
        same_size(on_port, agents["same"][1], textfiles)
        pids = {key: [proc.pid, *worker_pids(proc.pid)] for key, (proc, _) in agents.items()}
        if len(pids["on"]) > 2:
            raise RuntimeError(f"expected one SSH worker process, found {pids['on'][1:]}")
        cpu0 = {key: [cpu_seconds(pid) for pid in pids[key]] for key in agents}
        t0 = time.monotonic()
        for key in agents:
            out[key]["rss_first"] = [rss_mb(pid) for pid in pids[key]]
        with Scraper(pids["on"], [port for _, port in agents.values()]) as scraper:
            time.sleep(settle)
        for index, (key, (_, port)) in enumerate(agents.items()):
            figures = out[key]
            took = time.monotonic() - t0
            figures["cpu"] = [(cpu_seconds(pid) - before) / took
                              for pid, before in zip(pids[key], cpu0[key], strict=True)]
            figures["rss_later"] = [rss_mb(pid) for pid in pids[key]]
            figures["pss_later"] = sum(pss_mb(pid) for pid in pids[key])
            figures["all"] = quantiles([s[index] for s in scraper.samples])
            busy = [s[index] for s in scraper.samples if s[-1] > 0.2]
            quiet = [s[index] for s in scraper.samples if s[-1] <= 0.2]
            figures["busy"], figures["quiet"] = quantiles(busy), quantiles(quiet)
            figures["busy_n"], figures["quiet_n"] = len(busy), len(quiet)
            _, body = get(port, "/metrics")
            _, zipped = get(port, "/metrics", gzipped=True)
            figures["size"], figures["gzipped"] = len(body), len(zipped)
            figures["gc"] = gc_pauses(body)
        _, probe = get(on_port, f"/probe?target={spec['targets'][0]}")
        out["on"]["probe"] = len(probe)
        _, body = get(on_port, "/metrics")
        if count_up(body, targets) < targets:
            raise RuntimeError("targets went down during the settle window")
    finally:
        for proc, _ in agents.values():
            proc.terminate()
        for proc, _ in agents.values():
            proc.wait(timeout=60)
    return out


def where(spec: dict[str, Any], count: int) -> None:
    """Memory retained per target (kept connection, latest node families, snapshot) and its
    top allocation sites, from the worker run in process under tracemalloc."""
    import gc
    import tracemalloc

    from agent import runloop
    from agent.config import SshConfig
    from agent.exposition.registry import Registry
    from agent.ssh import quiet_asyncssh, tune_gc
    from agent.ssh.worker import SshWorker

    def worker_on(targets: list[str]) -> SshWorker:
        section = ssh_section(spec, True)
        section["targets"] = targets
        return SshWorker(SshConfig.model_validate(section), Registry())

    async def run() -> int:
        quiet_asyncssh()
        tune_gc()
        warm = worker_on(spec["targets"][-1:])  # imports and caches out of the way
        await warm.start(rounds=False)
        await warm.run_once()
        await warm.stop()
        tracemalloc.start(4)
        gc.collect()
        before = tracemalloc.take_snapshot()
        worker = worker_on(spec["targets"][:count])
        await worker.start(rounds=False)
        start = time.process_time()
        await worker.run_once()
        cpu_round = time.process_time() - start
        gc.collect()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        stats = after.compare_to(before, "filename")
        grown = sum(s.size_diff for s in stats)
        print(f"\nin process, {count} targets, first round under tracemalloc "
              f"({cpu_round:.1f} s CPU): {grown / count / 1024:.1f} KiB retained per target")
        print("top allocation sites (retained after the round, by file):")
        for stat in stats[:12]:
            print(f"  {stat.size_diff / count / 1024:>7.1f} KiB/target  "
                  f"{stat.count_diff / count:>6.0f} blocks/target  "
                  f"{stat.traceback[0].filename.replace(str(ROOT) + '/', '')}")
        await worker.stop()
        return 0

    runloop.run(run())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--settle", type=float, default=120.0,
                        help="seconds after every target is up (RSS again, CPU, scrapes)")
    parser.add_argument("--where", type=int, default=200,
                        help="targets for the in-process tracemalloc pass (0: skip)")
    parser.add_argument("--max-in-flight", type=int, default=64,
                        help="ssh.max_in_flight (the default: 64)")
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
        spec["max_in_flight"] = args.max_in_flight
        print(f"{args.targets} targets on {len(servers)} sshd processes; node module + "
              f"{len(CHECKS)} checks every {INTERVAL:g} s, connections kept, "
              f"{args.max_in_flight} in flight; {note}")
        figures = run_agents(spec, directory, args.settle)
        off, same, on = figures["off"], figures["same"], figures["on"]
        print(f"\nevery target up {on['up_after']:.1f} s after start")
        print(f"{'figure':<34}{'SSH off':>12}{'SSH on':>12}{'on / off':>10}"
              f"{'off, same size':>16}{'on / it':>9}")
        rows = [("RSS after the first round, MB", "rss_first", 1),
                (f"RSS {args.settle:g} s later, MB", "rss_later", 1),
                ("CPU, % of a core", "cpu", 100)]
        for label, key, scale in rows:
            total_off, total_on = sum(off[key]) * scale, sum(on[key]) * scale
            print(f"{label:<34}{total_off:>12.1f}{total_on:>12.1f}{total_on / total_off:>9.1f}x")
            if len(on[key]) == 2:  # else the worker runs in the agent's process
                print(f"{'  agent process / SSH worker':<34}{'':>12}"
                      f"{on[key][0] * scale:>6.1f} / {on[key][1] * scale:.1f}")
        print(f"{'PSS ' + format(args.settle, 'g') + ' s later (both), MB':<34}"
              f"{off['pss_later']:>12.1f}{on['pss_later']:>12.1f}"
              f"{on['pss_later'] / off['pss_later']:>9.1f}x")
        for span, name in (("busy", "while rounds run"), ("quiet", "between rounds"),
                           ("all", "overall")):
            for label, index in (("p50", 0), ("p99", 1)):
                print(f"{'/metrics ' + label + ', ' + name + ', ms':<34}"
                      f"{off[span][index] * 1e3:>12.2f}{on[span][index] * 1e3:>12.2f}"
                      f"{on[span][index] / off[span][index]:>9.1f}x"
                      f"{same[span][index] * 1e3:>16.2f}"
                      f"{on[span][index] / same[span][index]:>8.1f}x")
        print(f"(scrapes: {on['busy_n']} while rounds run, {on['quiet_n']} between rounds, "
              f"each agent)")
        for key, name in (("off", "SSH off"), ("same", "off, same size"), ("on", "SSH on")):
            pauses = ", ".join(f"gen {generation}: {count:.0f} in {total * 1e3:.0f} ms"
                               for generation, (count, total) in sorted(figures[key]["gc"].items()))
            print(f"garbage collections since start, {name}: {pauses}")
        print(f"/metrics size: {off['size'] / 1e3:.1f} kB off, {same['size'] / 1e3:.1f} kB "
              f"off with the same size, {on['size'] / 1e3:.1f} kB on "
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
