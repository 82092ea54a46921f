"""The agent's lifecycle: a reload applied whole or not at all, reload and stop serialised,
signal handlers before anything else, the shutdown path after a failed start, and background
tasks that die reported in /health."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.agent import Agent
from agent.config import Config, ConfigError, ConfigSource
from agent.ssh.targets import TargetSource
from agent.systemd import Notifier
from tests.pki import bcrypt_hash
from tests.test_systemd import NotifyListener, http


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[NotifyListener]:
    notify = NotifyListener(tmp_path)
    yield notify
    notify.close()


def fields(listener: NotifyListener) -> list[str]:
    return [field for _, text in listener.messages for field in text.split("\n")]


async def wait_until(condition: object, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def collector_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("collector")]


BASE = "web: {listen_address: '127.0.0.1:0', enable_lifecycle: true}\n"


async def test_a_failing_ssh_step_leaves_the_whole_running_config(
        listener: NotifyListener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "hostagent.yml"
    path.write_text(BASE)
    source = ConfigSource(path)
    agent = Agent(source.load(), source=source, notifier=Notifier({"NOTIFY_SOCKET": listener.path}))
    task = asyncio.create_task(agent.run())
    await asyncio.wait_for(agent.started.wait(), 10)
    base = f"http://{agent.addresses[0]}"
    try:
        jobs = dict(agent._jobs)
        web = tmp_path / "web.yml"
        web.write_text(f"basic_auth_users:\n  alice: {bcrypt_hash('pw')}\n")
        path.write_text(f"web: {{listen_address: '127.0.0.1:0', enable_lifecycle: true, "
                        f"config_file: {web}}}\n"
                        "collectors: {memory: {enabled: false}, cpu: {interval: 7}}\n"
                        "ssh: {enabled: true, targets: [{target: '127.0.0.1:1'}]}\n")

        def broken(self: TargetSource) -> bool:
            raise RuntimeError("injected")

        monkeypatch.setattr(TargetSource, "refresh", broken)
        with pytest.raises(ConfigError):
            await agent.reload()
        # Nothing of the new config runs: jobs, web config (no auth), SSH, the config itself.
        assert agent._jobs == jobs and agent.scheduler.statuses()[0].interval != 7
        assert {s.name for s in agent.scheduler.statuses()} == set(jobs)
        assert (await asyncio.to_thread(http, base, "/-/healthy"))[0] == 200
        assert agent.ssh.worker is None and agent.config.web.config_file is None
        assert agent.registry.snapshots["config"].families[0].samples[0].value == 0.0
        reloading = listener.wait_for("RELOADING=1")
        await asyncio.to_thread(listener.wait_for, "READY=1", 5, reloading + 1)
    finally:
        agent.request_stop()
        await task


async def test_sighup_then_sigterm_starts_nothing_after_stopping(
        listener: NotifyListener, tmp_path: Path) -> None:
    reading, release = threading.Event(), threading.Event()

    class SlowSource(ConfigSource):
        def load(self) -> Config:
            if self.path is not None and "ssh" in self.path.read_text():
                reading.set()
                release.wait(10)
            return super().load()

    path = tmp_path / "hostagent.yml"
    path.write_text(BASE)
    source = SlowSource(path)
    agent = Agent(source.load(), source=source,
                  notifier=Notifier({"NOTIFY_SOCKET": listener.path}))
    task = asyncio.create_task(agent.run())
    await asyncio.wait_for(agent.started.wait(), 10)
    await asyncio.to_thread(listener.wait_for, "READY=1")
    # The new config adds an SSH target; reading it takes until the test lets it go.
    path.write_text(BASE + "ssh: {enabled: true, targets: [{target: '127.0.0.1:1'}]}\n")
    os.kill(os.getpid(), signal.SIGHUP)
    await asyncio.to_thread(reading.wait, 10)
    await asyncio.to_thread(listener.wait_for, "RELOADING=1")
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.to_thread(listener.wait_for, "STOPPING=1")
    release.set()
    assert await asyncio.wait_for(task, 15) == 0
    await asyncio.sleep(0.2)  # let a reload that escaped the stop show itself
    stopping = fields(listener).index("STOPPING=1")
    assert "READY=1" not in fields(listener)[stopping:], listener.messages
    assert agent.ssh.worker is None
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("ssh")]


async def test_a_sighup_during_start_is_handled_after_it(
        listener: NotifyListener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "hostagent.yml"
    path.write_text(BASE)
    source = ConfigSource(path)
    agent = Agent(source.load(), source=source,
                  notifier=Notifier({"NOTIFY_SOCKET": listener.path}))
    installed = []
    load = agent.endpoint.load

    async def first_step(config_file: Path | None) -> None:
        # The first await of a start: a signal now must find the agent's handler.
        installed.append(signal.getsignal(signal.SIGHUP) != signal.SIG_DFL)
        if installed[0]:
            os.kill(os.getpid(), signal.SIGHUP)
            await asyncio.sleep(0.1)
        await load(config_file)

    monkeypatch.setattr(agent.endpoint, "load", first_step)
    task = asyncio.create_task(agent.run())
    try:
        await asyncio.wait_for(agent.started.wait(), 10)
        assert installed == [True]
        reloading = await asyncio.to_thread(listener.wait_for, "RELOADING=1")
        await asyncio.to_thread(listener.wait_for, "READY=1", 10, reloading + 1)
    finally:
        agent.request_stop()
        await task


async def test_a_failed_start_still_runs_the_shutdown_path(
        listener: NotifyListener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = Config.model_validate({"web": {"listen_address": "127.0.0.1:0"}, "ssh": {
        "enabled": True, "targets": [{"target": "127.0.0.1:1"}]}})
    agent = Agent(config, notifier=Notifier({"NOTIFY_SOCKET": listener.path}))

    def broken(self: TargetSource) -> bool:
        raise RuntimeError("injected")

    monkeypatch.setattr(TargetSource, "refresh", broken)
    with pytest.raises(RuntimeError, match="injected"):
        await asyncio.wait_for(agent.run(), 15)
    assert not collector_tasks(), "collector loops stopped"
    assert agent.runner is not None and not agent.runner.sites, "listener closed"
    await asyncio.to_thread(listener.wait_for, "STOPPING=1", 5)
    assert "READY=1" not in fields(listener)


async def test_a_background_task_that_dies_is_logged_and_degrades_health(
        listener: NotifyListener, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = Config.model_validate({"web": {"listen_address": "127.0.0.1:0"}})
    agent = Agent(config, notifier=Notifier({"NOTIFY_SOCKET": listener.path}))

    async def broken_watch() -> None:
        await wait_until(agent.health.ready)
        raise ValueError("watcher bug")

    agent.endpoint.watch = broken_watch  # type: ignore[method-assign]
    task = asyncio.create_task(agent.run())
    try:
        await asyncio.wait_for(agent.started.wait(), 10)
        await wait_until(lambda: "failed_tasks" in agent.health.report()[1])
        status, body = agent.health.report()
        assert status == 200
        assert body["status"] == "degraded"
        assert body["failed_tasks"] == {"web-config": "ValueError: watcher bug"}
        died = [r for r in caplog.records if r.getMessage() == "background task died"]
        assert died and died[0].exc_info is not None
        assert getattr(died[0], "kv", {}) == {"task": "web-config"}
    finally:
        agent.request_stop()
        await task


async def test_a_collector_loop_that_dies_is_named_in_health(
        listener: NotifyListener, tmp_path: Path) -> None:
    config = Config.model_validate({"web": {"listen_address": "127.0.0.1:0"},
                                    "collectors": {"loadavg": {"interval": 0.2}}})
    agent = Agent(config, notifier=Notifier({"NOTIFY_SOCKET": listener.path}))
    run_batch = agent.scheduler.run_batch
    calls: list[str] = []

    async def failing_after_the_first(states: list[Any]) -> None:
        if [s.job.name for s in states] == ["loadavg"]:
            calls.append("loadavg")
            if len(calls) > 1:
                raise RuntimeError("scheduler bug")
        await run_batch(states)

    agent.scheduler.run_batch = failing_after_the_first  # type: ignore[method-assign]
    task = asyncio.create_task(agent.run())
    try:
        await asyncio.wait_for(agent.started.wait(), 10)
        await wait_until(lambda: "failed_tasks" in agent.health.report()[1])
        assert agent.health.report()[1]["failed_tasks"] == {
            "collectors:every 0.2s": "RuntimeError: scheduler bug"}
    finally:
        agent.request_stop()
        await task
