"""The SSH worker on an event loop of its own: asyncssh's connections and commands never run on
the loop that serves /metrics, snapshots still reach the registry, a worker task that dies is
still named in /health, and a stuck worker loop is seen (the watchdog withholds its ping)."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import aiohttp
import asyncssh
import pytest

from agent.agent import Agent
from agent.config import Config
from agent.exposition.registry import Registry, TargetSnapshot
from agent.ssh import SshSupervisor
from agent.ssh.worker import SshWorker
from tests.sshd import SshLab
from tests.test_ssh_web import agent_config, get, wait_for
from tests.test_web import running


def ssh_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "ssh"]


async def test_asyncssh_runs_on_a_loop_other_than_the_web_servers(
        ssh_lab: SshLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, asyncio.AbstractEventLoop, str]] = []  # (call, its loop, its thread)
    connect = asyncssh.connect
    create_process = asyncssh.SSHClientConnection.create_process

    async def spied_connect(*args: Any, **kwargs: Any) -> Any:
        seen.append(("connect", asyncio.get_running_loop(), threading.current_thread().name))
        return await connect(*args, **kwargs)

    def spied_create_process(self: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(("command", asyncio.get_running_loop(), threading.current_thread().name))
        return create_process(self, *args, **kwargs)

    monkeypatch.setattr(asyncssh, "connect", spied_connect)
    monkeypatch.setattr(asyncssh.SSHClientConnection, "create_process", spied_create_process)
    flag = tmp_path / "release"
    name = f"127.0.0.1:{ssh_lab.server().ports[0]}"
    # The round's check holds until the test lets it go: the test looks while it runs.
    held = {"name": "held", "command": f"while [ ! -e {flag} ]; do sleep 0.05; done"}
    agent = Agent(Config.model_validate(agent_config(ssh_lab, [name], checks=[held])))
    web_loop = asyncio.get_running_loop()
    async with running(agent) as base, aiohttp.ClientSession() as session:
        async def in_round() -> bool:
            return any(call == "command" for call, _, _ in seen)

        await wait_for(in_round, "the round's first command")
        assert (await get(session, f"{base}/metrics"))[0] == 200, "served while it runs"
        assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("ssh:")]
        flag.touch()

        async def probed() -> bool:
            return (await get(session, f"{base}/probe?target={name}"))[0] == 200

        await wait_for(probed, "the round's snapshot on the web server's loop")
        assert name in agent.registry.targets
        assert {call for call, _, _ in seen} == {"connect", "command"}
        assert all(loop is not web_loop and thread == "ssh" for _, loop, thread in seen), seen
        assert len(ssh_threads()) == 1
    assert not ssh_threads(), "the worker's loop and thread end with the agent"


async def test_a_worker_task_that_dies_is_named_in_health(
        ssh_lab: SshLab, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: SshWorker) -> dict[str, float]:
        raise RuntimeError("injected")

    monkeypatch.setattr(SshWorker, "_modules", broken)
    agent = Agent(Config.model_validate(agent_config(ssh_lab, ["127.0.0.1:1"])))
    async with running(agent) as base, aiohttp.ClientSession() as session:
        async def named() -> bool:
            nonlocal body
            async with session.get(f"{base}/health") as response:
                body = json.loads(await response.text())
            return body["status"] == "degraded" and "ssh:127.0.0.1:1" in body.get(
                "failed_tasks", {})

        body: dict[str, Any] = {}
        await wait_for(named, "the dead target loop in /health, degraded")
        assert "RuntimeError: injected" in body["failed_tasks"]["ssh:127.0.0.1:1"]


async def test_a_stuck_or_gone_worker_loop_is_seen(ssh_lab: SshLab) -> None:
    watched: list[asyncio.Task[None]] = []
    ssh = SshSupervisor(Registry(), watched.append)
    await ssh.apply(ssh_lab.config(["127.0.0.1:1"]))
    release = threading.Event()
    try:
        assert await ssh.responsive(10)
        assert ssh._loop is not None
        ssh._loop.call(release.wait, 30)  # a blocking call on the worker's loop
        assert not await ssh.responsive(0.2)
        release.set()
        assert await ssh.responsive(10)
        # The loop's thread ending on its own ends the watched "ssh-loop" task (a death).
        ended = next(task for task in watched if task.get_name() == "ssh-loop")
        assert not ended.done()
        ssh._loop.loop.call_soon_threadsafe(ssh._loop.loop.stop)
        await asyncio.wait_for(ended, 10)
        assert not ended.cancelled() and not await ssh.responsive(0.2)
    finally:
        release.set()
        await ssh.stop()
    assert not ssh_threads()
    assert await ssh.responsive(0.2), "no worker: nothing to wait for"


async def test_changes_of_one_turn_reach_the_registry_as_one() -> None:
    from agent.ssh.loop import Handoff, WorkerLoop

    registry = Registry()
    handoff = Handoff(registry, asyncio.get_running_loop())
    worker_loop = WorkerLoop("ssh")
    try:
        def turn() -> None:
            for name in ("a", "b", "c"):
                handoff.publish_target(TargetSnapshot(name, (("target", name),), {}))
            handoff.remove_target("b")

        async def arrived() -> bool:
            return bool(registry.targets)

        await asyncio.wrap_future(worker_loop.call(turn))
        await wait_for(arrived, "the hand-off")
        assert list(registry.targets) == ["a", "c"]
        assert registry.generation == 1, "one change, one wake-up of the renderer"
    finally:
        await worker_loop.close()
