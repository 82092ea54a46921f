"""SSH fan-out benchmark: hostagent's worker against parallel-ssh (and a bare asyncssh loop).

Loopback targets served by real OpenSSH sshd processes (16 ports each); every client runs
`cat /proc/loadavg` on every target at the same concurrency, keeping its connections:
the first round (connect, key exchange, auth, command) and the steady-state round (the same
connections reused). Each client runs in its own process, in turn, --repeat times; medians are
printed with the ratios. Then a real agent process probes every target on its schedule and
its RSS is read once all connections are open.

The targets log in as an unprivileged user whose shell is /bin/sh (created with useradd when
the benchmark runs as root and it does not exist yet; it is left in place). Without root the
current user is used.

usage: python bench/ssh.py [--targets 256] [--jobs 64] [--repeat 3] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import free_port, rss_mb  # noqa: E402

from tests.sshd import MAX_PORTS, Sshd, free_ports, user_key  # noqa: E402

BENCH_USER = "hostagent-bench"
COMMAND = "cat /proc/loadavg"
CLIENTS = ("hostagent", "parallel-ssh", "asyncssh")


def bench_user() -> tuple[str, str]:
    """(user, note): the unprivileged /bin/sh user, created if missing and possible."""
    try:
        entry = pwd.getpwnam(BENCH_USER)
    except KeyError:
        pass
    else:
        return BENCH_USER, f"existing user {BENCH_USER} (shell {entry.pw_shell})"
    if os.geteuid() == 0 and shutil.which("useradd"):
        # '*': no password can match, but the account is not locked (sshd without PAM
        # refuses locked accounts, even for key logins).
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", "--password", "*",
                        BENCH_USER], check=True, timeout=60)
        return BENCH_USER, f"created user {BENCH_USER} with shell /bin/sh"
    user = pwd.getpwuid(os.geteuid())
    return user.pw_name, f"not root: logging in as {user.pw_name} (shell {user.pw_shell})"


# The clients, each run in a child process: prints {"first": s, "steady": [s...], "cpu": s,
# "ok": n}, cpu being the client's own CPU time per steady round.

def _cpu() -> float:
    times = os.times()
    return times.user + times.system


async def run_hostagent(spec: dict[str, Any]) -> dict[str, Any]:
    from agent.config import SshConfig
    from agent.exposition.registry import Registry
    from agent.ssh import quiet_asyncssh, tune_gc
    from agent.ssh.worker import SshWorker

    config = SshConfig.model_validate({
        "enabled": True, "targets": spec["targets"], "user": spec["user"],
        "key_files": [spec["key"]], "known_hosts": spec["known_hosts"],
        "max_in_flight": spec["jobs"], "max_handshakes": min(16, spec["jobs"]),
        "connect_timeout": 60, "login_timeout": 60, "command_timeout": 60,
        "checks": [{"name": "loadavg", "command": COMMAND}],
        "modules": {"login": {"enabled": False}}})
    quiet_asyncssh()  # as the agent runs the worker
    tune_gc()
    worker = SshWorker(config, Registry())
    await worker.start(rounds=False)
    try:
        start = time.perf_counter()
        await worker.run_once()
        first = time.perf_counter() - start
        steady, cpu = [], _cpu()
        for _ in range(spec["rounds"]):
            start = time.perf_counter()
            await worker.run_once()
            steady.append(time.perf_counter() - start)
        cpu = (_cpu() - cpu) / spec["rounds"]
        ok = 0
        for target in spec["targets"]:
            families = worker.module_families(target) or {}
            ok += any(s.value == 1 for f in families.get("checks", []) for s in f.samples
                      if s.name == "hostagent_ssh_check_success")
        return {"first": first, "steady": steady, "cpu": cpu, "ok": ok}
    finally:
        await worker.stop()


async def run_asyncssh(spec: dict[str, Any]) -> dict[str, Any]:
    import asyncssh

    limit = asyncio.Semaphore(spec["jobs"])
    keys = asyncssh.load_keypairs([spec["key"]])
    known = asyncssh.read_known_hosts(spec["known_hosts"])
    conns: dict[str, asyncssh.SSHClientConnection] = {}

    async def one(target: str) -> bool:
        async with limit:
            if target not in conns:
                host, port = target.rsplit(":", 1)
                conns[target] = await asyncssh.connect(
                    host, int(port), username=spec["user"], client_keys=keys,
                    known_hosts=known, config=None, agent_path=None)
            result = await conns[target].run(COMMAND, check=False)
            return result.exit_status == 0 and bool(result.stdout)

    start = time.perf_counter()
    oks = await asyncio.gather(*(one(t) for t in spec["targets"]))
    first = time.perf_counter() - start
    steady, cpu = [], _cpu()
    for _ in range(spec["rounds"]):
        start = time.perf_counter()
        oks = await asyncio.gather(*(one(t) for t in spec["targets"]))
        steady.append(time.perf_counter() - start)
    cpu = (_cpu() - cpu) / spec["rounds"]
    for conn in conns.values():
        conn.close()
    return {"first": first, "steady": steady, "cpu": cpu, "ok": sum(oks)}


def run_parallel_ssh(spec: dict[str, Any]) -> dict[str, Any]:
    from pssh.clients import ParallelSSHClient
    from pssh.config import HostConfig

    hosts = [t.rsplit(":", 1)[0] for t in spec["targets"]]
    config = [HostConfig(port=int(t.rsplit(":", 1)[1]), user=spec["user"],
                         private_key=spec["key"]) for t in spec["targets"]]
    client = ParallelSSHClient(hosts, host_config=config, pool_size=spec["jobs"],
                               num_retries=1, timeout=60)

    def round_trip() -> int:
        output = client.run_command(COMMAND, stop_on_errors=False)
        client.join(output)
        return sum(1 for host in output
                   if host.exception is None and list(host.stdout) and host.exit_code == 0)

    start = time.perf_counter()
    ok = round_trip()
    first = time.perf_counter() - start
    steady, cpu = [], _cpu()
    for _ in range(spec["rounds"]):
        start = time.perf_counter()
        ok = round_trip()
        steady.append(time.perf_counter() - start)
    cpu = (_cpu() - cpu) / spec["rounds"]
    return {"first": first, "steady": steady, "cpu": cpu, "ok": ok}


def child(client: str, spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    if client == "parallel-ssh":
        result = run_parallel_ssh(spec)
    else:
        from agent import runloop

        async def run() -> int:
            runner = run_hostagent if client == "hostagent" else run_asyncssh
            print(json.dumps(await runner(spec)))
            return 0

        runloop.run(run())
        return
    print(json.dumps(result))


def measure(client: str, spec_path: Path) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--child", client, str(spec_path)],
                          capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"{client} failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def worker_pids(pid: int) -> list[int]:
    """The agent's SSH worker process (none with SSH off)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and b"agent.ssh.child" in command:
            found.append(int(entry.name))
    return found


def agent_rss(spec: dict[str, Any], directory: Path, ssh: bool) -> tuple[float, float]:
    """(RSS in MB once every target is up, seconds until then) of a real agent: its process
    and its SSH worker process together."""
    port = free_port()
    config = directory / f"agent-{ssh}.yml"
    config.write_text(json.dumps({
        "web": {"listen_address": f"127.0.0.1:{port}"},
        "ssh": {"enabled": ssh, "targets": spec["targets"], "user": spec["user"],
                "key_files": [spec["key"]], "known_hosts": spec["known_hosts"],
                "max_in_flight": spec["jobs"],
                "checks": [{"name": "loadavg", "command": COMMAND}]}}))
    proc = subprocess.Popen([sys.executable, "-m", "agent", "--config", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        start = time.perf_counter()
        want = len(spec["targets"]) if ssh else 0
        while time.perf_counter() - start < 300:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                              timeout=10).read().decode()
                up = sum(1 for line in body.splitlines() if line.startswith(
                    "hostagent_ssh_check_success{") and line.endswith((" 1", " 1.0")))
                ready = urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready",
                                               timeout=10).status == 200
                if up >= want and ready:
                    elapsed = time.perf_counter() - start
                    time.sleep(2)  # let the last snapshots settle
                    pids = [proc.pid, *worker_pids(proc.pid)]
                    return sum(rss_mb(pid) for pid in pids), elapsed
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("the agent never had every target up")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def start_servers(directory: Path, count: int, user: str) -> tuple[list[Sshd], dict[str, Any]]:
    """sshd processes (MAX_PORTS ports each) for count targets, their known_hosts, and the
    targets as the clients read them; a server that fails to start ends those started."""
    key = user_key(directory)
    ports = free_ports(count)
    servers: list[Sshd] = []
    try:
        for index in range(0, len(ports), MAX_PORTS):
            sshd = Sshd(directory / f"sshd{index // MAX_PORTS}", [key.public],
                        ports[index:index + MAX_PORTS], user=user,
                        max_startups=f"{count * 2}:30:{count * 4}")
            sshd.directory.chmod(0o755)
            (sshd.directory / "authorized_keys").chmod(0o644)
            servers.append(sshd)
            sshd.start()
    except BaseException:  # a port taken meanwhile: the servers started so far go too
        for sshd in servers:
            sshd.kill()
        raise
    known_hosts = directory / "known_hosts"
    known_hosts.write_text("".join(line + "\n" for s in servers
                                   for line in s.known_hosts_lines()))
    return servers, {"targets": [f"127.0.0.1:{port}" for port in ports], "user": user,
                     "key": str(key.path), "known_hosts": str(known_hosts)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=256)
    parser.add_argument("--jobs", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5, help="steady-state rounds per run")
    parser.add_argument("--quick", action="store_true", help="16 targets, 8 in flight, once")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return 0
    if args.quick:
        args.targets, args.jobs, args.repeat, args.rounds = 16, 8, 1, 2

    user, note = bench_user()
    directory = Path(tempfile.mkdtemp(prefix="hostagent-ssh-bench-"))
    directory.chmod(0o755)  # sshd reads authorized_keys as the login user
    servers: list[Sshd] = []
    try:
        servers, spec = start_servers(directory, args.targets, user)
        spec.update(jobs=args.jobs, rounds=args.rounds)
        spec_path = directory / "spec.json"
        spec_path.write_text(json.dumps(spec))
        print(f"{args.targets} targets on {len(servers)} sshd processes, {args.jobs} in "
              f"flight, `{COMMAND}`; {note}; {os.cpu_count()} CPUs")

        runs: dict[str, list[dict[str, Any]]] = {client: [] for client in CLIENTS}
        for repeat in range(args.repeat):
            order = CLIENTS if repeat % 2 == 0 else tuple(reversed(CLIENTS))
            for client in order:
                result = measure(client, spec_path)
                if result["ok"] != args.targets:
                    raise RuntimeError(f"{client}: {result['ok']} of {args.targets} targets ok")
                runs[client].append(result)
        figures = {client: (statistics.median(r["first"] for r in results),
                            statistics.median(s for r in results for s in r["steady"]),
                            statistics.median(r["cpu"] for r in results))
                   for client, results in runs.items()}
        print(f"\n{'client':<14}{'first round':>14}{'steady round':>14}{'first/steady':>14}"
              f"{'client CPU/steady round':>26}")
        for client, (first, steady, cpu) in figures.items():
            print(f"{client:<14}{first:>12.2f} s{steady:>12.3f} s{first / steady:>13.1f}x"
                  f"{cpu:>24.3f} s")
        ours_first, ours_steady, _ = figures["hostagent"]
        theirs_first, theirs_steady, _ = figures["parallel-ssh"]
        print(f"\nparallel-ssh / hostagent: first round {theirs_first / ours_first:.2f}x, "
              f"steady round {theirs_steady / ours_steady:.2f}x (above 1: hostagent faster)")

        idle, _ = agent_rss(spec, directory, ssh=False)
        loaded, took = agent_rss(spec, directory, ssh=True)
        print(f"agent RSS (with its SSH worker process): {idle:.1f} MB with SSH off, "
              f"{loaded:.1f} MB with all {args.targets} connections open (every target up "
              f"after {took:.1f} s)")
    finally:
        for sshd in servers:
            sshd.kill()
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
