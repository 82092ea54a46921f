"""The SSH worker in a process of its own: the agent's process never loads asyncssh and holds no
SSH connection, snapshots and facts still reach it, a reload switches targets whole, a worker
task that dies is still named in /health, a worker process that dies or stops answering is seen
and started again, and a stop leaves no process behind."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import yaml

import agent.ssh
from agent.agent import Agent
from agent.config import Config, ConfigSource
from agent.exposition.registry import Registry
from agent.ssh import SshSupervisor
from tests.sshd import SshLab
from tests.test_ssh_web import agent_config, get, wait_for
from tests.test_web import running

# A login round every second: the tests see results sooner.
QUICK = {"login": {"interval": 1}}


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def connections_to(pid: int, port: int) -> int:
    return sum(1 for c in psutil.Process(pid).net_connections("tcp")
               if c.raddr and c.raddr.port == port)


async def health(session: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    async with session.get(f"{base}/health") as response:
        body: dict[str, Any] = json.loads(await response.text())
        return body


async def test_connections_and_rounds_belong_to_the_worker_process(
        ssh_lab: SshLab, tmp_path: Path) -> None:
    sshd = ssh_lab.server()
    port = sshd.ports[0]
    name = f"127.0.0.1:{port}"
    flag = tmp_path / "release"
    # The round's check holds until the test lets it go: the test looks while it runs.
    held = {"name": "held", "command": f"while [ ! -e {flag} ]; do sleep 0.05; done"}
    data = agent_config(ssh_lab, [name], checks=[held], modules=QUICK)
    agent = Agent(Config.model_validate(data))
    async with running(agent) as base, aiohttp.ClientSession() as session:
        child = agent.ssh.pid
        assert child is not None and child != os.getpid()
        assert psutil.Process(child).ppid() == os.getpid()

        async def connected() -> bool:
            return connections_to(child, port) > 0

        await wait_for(connected, "the worker process's connection")
        assert connections_to(os.getpid(), port) == 0
        assert (await get(session, f"{base}/metrics"))[0] == 200, "served while it runs"
        assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("ssh:")]
        flag.touch()

        async def probed() -> bool:
            return (await get(session, f"{base}/probe?target={name}"))[0] == 200

        await wait_for(probed, "the round's snapshot in the agent's registry")
        assert agent.ssh.status() == (1, 1)
        assert agent.ssh.check_success(name, "held") is True
        outcome = await agent.ssh.run_on(name, "echo $PPID", 20)
        assert outcome.ok and outcome.stdout.strip(), outcome
    assert gone(child), "the worker process ends with the agent"


# An agent started the command line's way, SSH on with its host keys unchecked (the worker
# warns): once a target is up it prints what is loaded and the worker's pid, and stops.
STARTED = textwrap.dedent("""
    import asyncio, json, sys
    from agent import cli
    from agent.agent import Agent

    start = Agent._start

    async def started(self):
        await start(self)
        while self.ssh.status() != (1, 1):
            await asyncio.sleep(0.05)
        print(json.dumps({"modules": sorted(sys.modules), "worker": self.ssh.pid}), flush=True)
        self.request_stop()

    Agent._start = started
    sys.exit(cli.main(["--config", sys.argv[1]]))
""")


def test_the_agent_process_never_loads_asyncssh(ssh_lab: SshLab, tmp_path: Path) -> None:
    sshd = ssh_lab.server()
    data = agent_config(ssh_lab, [f"127.0.0.1:{sshd.ports[0]}"],
                        insecure_ignore_host_keys=True, modules=QUICK)
    path = tmp_path / "hostagent.yml"
    path.write_text(yaml.safe_dump(data))
    done = subprocess.run([sys.executable, "-c", STARTED, str(path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.splitlines()[-1])
    assert not [m for m in out["modules"] if m.startswith(("asyncssh", "agent.ssh.worker"))]
    assert gone(out["worker"])
    # The worker's own line, on the same stderr, in the agent's format.
    warned = [line for line in done.stderr.splitlines() if "NOT verified" in line]
    assert len(warned) == 1 and warned[0].startswith("ts=") and "level=warning" in warned[0]


def test_the_worker_process_dies_with_the_agent(ssh_lab: SshLab, tmp_path: Path) -> None:
    path = tmp_path / "hostagent.yml"
    path.write_text(yaml.safe_dump(agent_config(ssh_lab, ["127.0.0.1:1"])))
    script = STARTED.replace("while self.ssh.status() != (1, 1):", "while False:").replace(
        "self.request_stop()", "await asyncio.sleep(60)")
    agent = subprocess.Popen([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
    try:
        assert agent.stdout is not None
        worker = json.loads(agent.stdout.readline())["worker"]
        assert not gone(worker)
        agent.kill()
        agent.wait(timeout=30)
        deadline = time.monotonic() + 30
        while not gone(worker):
            assert time.monotonic() < deadline, "the worker process outlived the agent"
            time.sleep(0.05)
    finally:
        agent.kill()
        agent.wait(timeout=30)


async def test_a_reload_switches_targets_whole(ssh_lab: SshLab, tmp_path: Path) -> None:
    sshd = ssh_lab.server(ports=2)
    first, second = (f"127.0.0.1:{port}" for port in sshd.ports)
    path = tmp_path / "hostagent.yml"
    data = agent_config(ssh_lab, [first], modules=QUICK)
    path.write_text(yaml.safe_dump(data))
    agent = Agent(Config.model_validate(data), source=ConfigSource(path))
    async with running(agent) as base, aiohttp.ClientSession() as session:
        child = agent.ssh.pid

        async def up() -> bool:
            return agent.ssh.status() == (1, 1)

        await wait_for(up, "the first target up")
        assert first in agent.registry.targets
        data["ssh"]["targets"] = [{"target": second}]
        path.write_text(yaml.safe_dump(data))
        await agent.reload()
        # Once the reload is done: the new target list, the old target's series gone.
        _, text = await get(session, f"{base}/sd")
        assert [group["targets"] for group in json.loads(text)] == [[second]]
        assert first not in agent.registry.targets
        assert (await get(session, f"{base}/probe?target={first}"))[0] == 404
        assert agent.ssh.pid == child, "the same process, reconfigured"
        await wait_for(up, "the second target up")
        assert list(agent.registry.targets) == [second]


async def test_a_worker_task_that_dies_is_named_in_health(ssh_lab: SshLab) -> None:
    agent = Agent(Config.model_validate(agent_config(ssh_lab, ["127.0.0.1:1"])))
    # Fault injection: the worker process's target loops fail at once.
    agent.ssh.command = (sys.executable, "-P", "-c", textwrap.dedent("""
        import sys
        from agent.ssh import child, worker

        def broken(self):
            raise RuntimeError("injected")

        worker.SshWorker._modules = broken
        sys.exit(child.main(sys.argv[1:]))
    """))
    async with running(agent) as base, aiohttp.ClientSession() as session:
        body: dict[str, Any] = {}

        async def named() -> bool:
            nonlocal body
            body = await health(session, base)
            return body["status"] == "degraded" and "ssh:127.0.0.1:1" in body.get(
                "failed_tasks", {})

        await wait_for(named, "the dead target loop in /health, degraded")
        assert body["failed_tasks"]["ssh:127.0.0.1:1"] == "RuntimeError: injected"


async def test_a_killed_worker_process_is_seen_and_started_again(ssh_lab: SshLab) -> None:
    sshd = ssh_lab.server()
    name = f"127.0.0.1:{sshd.ports[0]}"
    agent = Agent(Config.model_validate(agent_config(ssh_lab, [name], modules=QUICK)))
    async with running(agent) as base, aiohttp.ClientSession() as session:
        async def up() -> bool:
            return agent.ssh.status() == (1, 1) and name in agent.registry.targets

        await wait_for(up, "the target up")
        first = agent.ssh.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        body: dict[str, Any] = {}

        async def degraded() -> bool:
            nonlocal body
            body = await health(session, base)
            return "ssh-worker" in body.get("failed_tasks", {})

        await wait_for(degraded, "the worker process's end in /health")
        assert body["status"] == "degraded"
        assert "killed by SIGKILL" in body["failed_tasks"]["ssh-worker"]
        await wait_for(up, "the target up again, from a new worker process")
        assert agent.ssh.pid not in (None, first) and gone(first)
        body = await health(session, base)
        assert body["status"] == "ok" and "failed_tasks" not in body, body
        second = agent.ssh.pid
    assert second is not None and gone(second)


async def test_a_stopped_worker_process_is_killed_and_started_again(
        ssh_lab: SshLab, monkeypatch: Any) -> None:
    """A worker process that does not answer pings is killed, named as such and replaced;
    nothing is withheld from the agent meanwhile (its watchdog is not the worker's)."""
    monkeypatch.setattr(agent.ssh, "PING_SECONDS", 0.2)
    monkeypatch.setattr(agent.ssh, "STUCK_SECONDS", 0.5)
    monkeypatch.setattr(agent.ssh, "RESTART_SECONDS", 0.1)
    deaths: list[tuple[str, str]] = []
    recovered: list[str] = []

    def watch(task: asyncio.Task[Any]) -> None:
        task.add_done_callback(lambda done: done.cancelled() or deaths.append(
            (done.get_name(), str(done.exception()))))

    ssh = SshSupervisor(Registry(), watch, recovered.append)
    await ssh.apply(ssh_lab.config(["127.0.0.1:1"]))
    first = ssh.pid
    assert first is not None
    try:
        os.kill(first, signal.SIGSTOP)

        async def replaced() -> bool:
            return ssh.pid not in (None, first)

        await wait_for(replaced, "a new worker process")
        assert gone(first)
        assert deaths == [("ssh-worker", "the SSH worker process did not answer for 0.5 s "
                                         "and was killed")]
        assert recovered == ["ssh-worker"]
        second = ssh.pid
    finally:
        if not gone(first):
            os.kill(first, signal.SIGCONT)
        await ssh.stop()
    assert ssh.pid is None and second is not None and gone(second)


def test_the_worker_process_loads_no_settings_models() -> None:
    """Its memory: the configuration and collector settings models (pydantic) and aiohttp stay
    in the agent; what the worker needs of the settings crosses as plain values."""
    code = ("import sys, agent.ssh.child; print(sorted(m for m in sys.modules if m in ("
            "'pydantic', 'pydantic_core', 'aiohttp.web', 'agent.config', "
            "'agent.collectors.catalog')))")
    done = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "[]"



async def test_a_worker_process_whose_start_is_cancelled_is_killed(ssh_lab: SshLab) -> None:
    """A stop or reload cancelling a start leaves no process behind (it never says hello)."""
    from agent.ssh.process import WorkerProcess, WorkerView

    silent = (sys.executable, "-c", "import time; time.sleep(60)")
    view = WorkerView(ssh_lab.config(["127.0.0.1:1"]))
    process = WorkerProcess(Registry(), view, lambda *died: None, silent)
    start = asyncio.create_task(process.started(timeout=60))
    await asyncio.sleep(0.2)
    start.cancel()
    await asyncio.gather(start, return_exceptions=True)

    async def ended() -> bool:
        return gone(process.pid)

    await wait_for(ended, "the cancelled worker process's end")


def test_a_worker_task_end_is_reported_whatever_its_exception() -> None:
    """An exception type that is not made from one message (UnicodeDecodeError) is reported
    by name rather than breaking the supervisor."""
    deaths: list[str] = []

    async def main() -> None:
        def watch(task: asyncio.Task[Any]) -> None:
            task.add_done_callback(lambda done: deaths.append(repr(done.exception())))

        ssh = SshSupervisor(Registry(), watch)
        ssh._relay("ssh-refresh", "UnicodeDecodeError", "bad byte", "Traceback ...")
        ssh._relay("ssh-round", "KeyError", "'db1'", "Traceback ...")
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    asyncio.run(main())
    assert deaths == ["RuntimeError('UnicodeDecodeError: bad byte')", 'KeyError("\'db1\'")']
