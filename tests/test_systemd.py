"""systemd integration: sd_notify protocol, watchdog, reload, and the unit file."""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.agent import Agent
from agent.config import Config, ConfigSource
from agent.systemd import Notifier
from tests.conftest import require_tool
from tests.test_process import AgentProcess

ROOT = Path(__file__).resolve().parent.parent


class NotifyListener:
    """A test-owned NOTIFY_SOCKET: records every datagram with its arrival time."""

    def __init__(self, directory: Path) -> None:
        self.path = str(directory / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self._closed = False
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closed:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def wait_for(self, field: str, timeout: float = 15, after: int = 0) -> int:
        """Index of the first message at or after `after` that has the field."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for index, (_, text) in enumerate(self.messages[after:], after):
                if field in text.split("\n"):
                    return index
            time.sleep(0.01)
        raise AssertionError(f"no {field!r} in {self.messages}")

    def close(self) -> None:
        self._closed = True
        self.sock.close()


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[NotifyListener]:
    notify = NotifyListener(tmp_path)
    yield notify
    notify.close()


def test_notifier_without_socket_is_silent() -> None:
    notifier = Notifier({})
    assert not notifier.enabled and notifier.watchdog_interval is None
    notifier.ready("x")  # must not raise


@pytest.mark.parametrize(("env", "expected"), [
    ({"WATCHDOG_USEC": "2000000"}, 1.0),
    ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}, 1.0),
    ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}, None),
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "junk"}, None),
])
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert Notifier(env).watchdog_interval == expected


def test_abstract_namespace_socket() -> None:
    name = f"hostagent-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        Notifier({"NOTIFY_SOCKET": "@" + name}).notify("READY=1")
        assert sock.recv(100) == b"READY=1"


def test_protocol_sequence_of_a_real_process(listener: NotifyListener, tmp_path: Path) -> None:
    config = tmp_path / "hostagent.yml"
    config.write_text("collectors: {cpu: {interval: 1}}\n")
    env = {**os.environ, "NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": "400000"}
    agent = AgentProcess("--config", str(config), "--web.listen-address", "127.0.0.1:0", env=env)
    try:
        ready = listener.wait_for("READY=1")
        assert agent.get("/-/ready")[0] == 200, "READY=1 only after every collector ran once"
        assert any(line.startswith("STATUS=collecting ")
                   for line in listener.messages[ready][1].split("\n"))
        # Half of WATCHDOG_USEC: a ping every 0.2 s; five of them prove the pinging goes on.
        deadline = time.monotonic() + 15
        while sum(text == "WATCHDOG=1" for _, text in listener.messages) < 5:
            assert time.monotonic() < deadline, listener.messages
            time.sleep(0.05)
        agent.proc.send_signal(signal.SIGHUP)
        reloading = listener.wait_for("RELOADING=1", after=ready + 1)
        assert re.search(r"^MONOTONIC_USEC=\d+$", listener.messages[reloading][1], re.M)
        listener.wait_for("READY=1", after=reloading + 1)
        agent.proc.send_signal(signal.SIGTERM)
        listener.wait_for("STOPPING=1", after=reloading + 1)
        assert agent.proc.wait(timeout=15) == 0
    finally:
        if agent.proc.poll() is None:
            agent.proc.kill()


async def start_agent(config: Config, listener: NotifyListener, tmp_path: Path,
                      source: ConfigSource | None = None) -> tuple[Agent, asyncio.Task[int]]:
    notifier = Notifier({"NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": "200000"})
    agent = Agent(config, source=source, notifier=notifier)
    task = asyncio.create_task(agent.run())
    await asyncio.wait_for(agent.started.wait(), 10)
    return agent, task


def local_config(**collectors: object) -> Config:
    return Config.model_validate({"web": {"listen_address": "127.0.0.1:0"},
                                  "collectors": collectors})


async def test_blocked_loop_stops_the_pings(listener: NotifyListener, tmp_path: Path) -> None:
    agent, task = await start_agent(local_config(), listener, tmp_path)
    await asyncio.sleep(0.6)
    time.sleep(1.0)  # block the event loop itself
    blocked_at = time.monotonic()
    await asyncio.sleep(0.5)
    agent.request_stop()
    await task
    pings = [t for t, text in listener.messages if text == "WATCHDOG=1"]
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert max(gaps) >= 0.95, "no ping may be sent while the loop is blocked"
    assert any(t > blocked_at for t in pings), "pings resume once the loop turns again"


async def test_dead_scheduler_stops_the_pings(listener: NotifyListener, tmp_path: Path) -> None:
    agent, task = await start_agent(local_config(), listener, tmp_path)
    await asyncio.sleep(0.5)
    assert agent.scheduler.alive()
    for running in asyncio.all_tasks():
        if running.get_name().startswith("collectors:every"):
            running.cancel()
    await asyncio.sleep(0.1)
    killed_at = time.monotonic()
    await asyncio.sleep(1.0)
    assert not agent.scheduler.alive()
    agent.request_stop()
    await task
    pings = [t for t, text in listener.messages if text == "WATCHDOG=1"]
    assert pings and all(t < killed_at for t in pings), "no ping once a collector loop died"


def http(base: str, path: str, method: str = "GET") -> tuple[int, str]:
    request = urllib.request.Request(f"{base}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def metrics_until(base: str, condition: Callable[[str], bool]) -> str:
    """/metrics once condition holds of it (the render after a collection or a reload)."""
    deadline = time.monotonic() + 15
    while True:
        status, text = await asyncio.to_thread(http, base, "/metrics")
        if status == 200 and condition(text):
            return text
        assert time.monotonic() < deadline, text
        await asyncio.sleep(0.05)


async def test_reload_applies_valid_and_rejects_invalid_config(
    listener: NotifyListener, tmp_path: Path
) -> None:
    path = tmp_path / "hostagent.yml"
    path.write_text("web: {listen_address: '127.0.0.1:0', enable_lifecycle: true}\n")
    source = ConfigSource(path)
    agent, task = await start_agent(source.load(), listener, tmp_path, source)
    base = f"http://{agent.addresses[0]}"
    try:
        await metrics_until(base, lambda text: "node_memory_MemTotal_bytes" in text
                            and "hostagent_config_last_reload_successful 1\n" in text)

        # A valid change over POST: memory off, cpu faster; the listener stays.
        path.write_text("web: {listen_address: '127.0.0.1:0', enable_lifecycle: true}\n"
                        "collectors: {memory: {enabled: false}, cpu: {interval: 2}}\n")
        assert await asyncio.to_thread(http, base, "/-/reload", "POST") == (200, "reloaded\n")
        await metrics_until(base, lambda text: "node_memory_MemTotal_bytes" not in text
                            and "node_cpu_seconds_total" in text)
        health = agent.health.report()[1]["collectors"]
        assert "memory" not in health and health["cpu"]["interval_seconds"] == 2

        # An invalid file over POST: 400 naming the field; the running config stays.
        path.write_text("collectors: {cpu: {interval: -3}}\n")
        status, text = await asyncio.to_thread(http, base, "/-/reload", "POST")
        assert status == 400 and text == "collectors.cpu.interval: must be greater than 0\n"
        await metrics_until(
            base, lambda text: "hostagent_config_last_reload_successful 0\n" in text)
        assert agent.config.collectors.cpu.interval == 2

        # The same through SIGHUP: handled (RELOADING=1, then READY=1 with the failure in its
        # status), the running config kept.
        async def sighup() -> str:
            before = len(listener.messages)
            os.kill(os.getpid(), signal.SIGHUP)
            reloading = await asyncio.to_thread(listener.wait_for, "RELOADING=1", 15, before)
            ready = await asyncio.to_thread(listener.wait_for, "READY=1", 15, reloading + 1)
            return listener.messages[ready][1]

        assert "last reload failed" in await sighup()
        assert agent.config.collectors.cpu.interval == 2
        path.write_text("web: {listen_address: '127.0.0.1:1', enable_lifecycle: true}\n")
        assert "last reload failed" not in await sighup()
        # The memory collector's first run, then a render.
        text = await metrics_until(base, lambda text: "node_memory_MemTotal_bytes" in text)
        assert "hostagent_config_last_reload_successful 1\n" in text
        # The listen address needs a restart: kept, not half-applied.
        assert agent.config.web.listen_address == "127.0.0.1:0"
        assert (await asyncio.to_thread(http, base, "/-/reload"))[0] == 405
    finally:
        agent.request_stop()
        await task


async def test_lifecycle_endpoint_is_off_by_default(listener: NotifyListener,
                                                    tmp_path: Path) -> None:
    agent, task = await start_agent(local_config(), listener, tmp_path)
    try:
        status, text = await asyncio.to_thread(http, f"http://{agent.addresses[0]}",
                                               "/-/reload", "POST")
        assert status == 403 and "web.enable_lifecycle" in text
    finally:
        agent.request_stop()
        await task


def test_no_failed_or_empty_scrape_during_reloads(tmp_path: Path) -> None:
    path = tmp_path / "hostagent.yml"
    configs = [
        "collectors: {cpu: {interval: 1}}\n",
        "collectors: {cpu: {interval: 2}, memory: {enabled: false}}\n",
        "collectors: {cpu: {interval: 1}, load: {enabled: false}}\n",
    ]
    path.write_text(configs[0])
    agent = AgentProcess("--config", str(path), "--web.listen-address", "127.0.0.1:0")
    try:
        agent.wait_ready()
        results: list[tuple[int, bool]] = []
        stop = threading.Event()

        def scrape() -> None:
            deadline = time.monotonic() + 20
            while not stop.is_set() and time.monotonic() < deadline and len(results) < 5000:
                status, body = agent.get("/metrics")
                results.append((status, b"node_cpu_seconds_total" in body))

        client = threading.Thread(target=scrape)
        client.start()
        for round_ in range(6):
            path.write_text(configs[round_ % len(configs)])
            agent.proc.send_signal(signal.SIGHUP)
            agent.wait_for(r'msg=(reloaded)')
            # Scrapes across the reload and the renders after it before the next one.
            wanted = len(results) + 10
            deadline = time.monotonic() + 15
            while len(results) < wanted:
                assert client.is_alive() and time.monotonic() < deadline, len(results)
                time.sleep(0.01)
        stop.set()
        client.join()
        assert all(status == 200 and complete for status, complete in results)
    finally:
        agent.proc.terminate()
        assert agent.proc.wait(timeout=15) == 0


def test_unit_file_verifies_and_is_hardened(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze")
    # verify checks that ExecStart exists: point the install prefix at this checkout's venv.
    hostagent = shutil.which("hostagent", path=str(Path(sys.executable).parent))
    assert hostagent is not None
    prefix = str(Path(hostagent).parent.parent)
    unit = tmp_path / "hostagent.service"
    unit.write_text((ROOT / "systemd" / "hostagent.service").read_text()
                    .replace("/usr/local/lib/hostagent", prefix))
    verify = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                            timeout=60)
    assert verify.returncode == 0 and verify.stdout + verify.stderr == ""
    security = subprocess.run([analyze, "security", "--offline=true", str(unit)],
                              capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: ([\d.]+)", security.stdout)
    assert match is not None, security.stdout + security.stderr
    assert float(match.group(1)) <= 2.0
    text = unit.read_text()
    for directive in ("Type=notify", "NotifyAccess=main", "WatchdogSec=", "Restart=on-failure",
                      "RestartPreventExitStatus=2", "ExecReload=/bin/kill -HUP $MAINPID"):
        assert directive in text


async def test_reload_of_a_file_that_is_not_utf8_is_rejected_and_leaks_nothing(
        listener: NotifyListener, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from tests.pki import bcrypt_hash

    secret = bcrypt_hash("hunter2")
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  alice: {secret}\n")
    path = tmp_path / "hostagent.yml"
    path.write_text(f"web: {{listen_address: '127.0.0.1:0', enable_lifecycle: true, "
                    f"config_file: {web}, auth_exempt_probes: true}}\n")
    source = ConfigSource(path)
    agent, task = await start_agent(source.load(), listener, tmp_path, source)
    base = f"http://{agent.addresses[0]}"
    try:
        web.write_bytes(web.read_bytes() + b"# caf\xe9\n")
        # Over POST: 400 naming the file; the metric and systemd hear about it.
        request = urllib.request.Request(f"{base}/-/reload", method="POST", headers={
            "Authorization": "Basic " + base64.b64encode(b"alice:hunter2").decode()})
        with pytest.raises(urllib.error.HTTPError) as info:
            await asyncio.to_thread(urllib.request.urlopen, request, timeout=10)
        assert info.value.code == 400
        assert info.value.read().decode() == f"{web}: not UTF-8: byte 0xe9 at line 3\n"
        reloading = await asyncio.to_thread(listener.wait_for, "RELOADING=1")
        await asyncio.to_thread(listener.wait_for, "READY=1", 15, reloading + 1)
        assert agent.registry.snapshots["config"].families[0].samples[0].value == 0.0

        # Through SIGHUP: logged as one rejected problem, nothing escapes the task.
        os.kill(os.getpid(), signal.SIGHUP)
        reloading = await asyncio.to_thread(listener.wait_for, "RELOADING=1", 15, reloading + 1)
        await asyncio.to_thread(listener.wait_for, "READY=1", 15, reloading + 1)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and agent._reloads:
            await asyncio.sleep(0.01)
        assert not agent._reloads
    finally:
        agent.request_stop()
        await task
    text = "\n".join(f"{r.getMessage()} {getattr(r, 'kv', '')} {r.exc_text or ''}"
                     for r in caplog.records)
    assert secret not in text and "never retrieved" not in text
    assert text.count("not UTF-8") == 2, text


def test_notify_reload_drop_in(tmp_path: Path) -> None:
    """systemd >= 253 gets Type=notify-reload from the drop-in (systemctl reload waits for
    READY=1; ExecReload cleared so the signal is not sent twice); older systemd keeps the
    unit's Type=notify, so the drop-in is installed only by version."""
    drop_in = (ROOT / "systemd" / "hostagent-notify-reload.conf").read_text()
    directives = [line for line in drop_in.splitlines() if line and not line.startswith("#")]
    assert directives == ["[Service]", "Type=notify-reload", "ExecReload="]
    makefile = (ROOT / "Makefile").read_text()
    assert "-ge 253" in makefile and "hostagent.service.d/notify-reload.conf" in makefile
    analyze = require_tool("systemd-analyze")
    version = int(subprocess.run([analyze, "--version"], capture_output=True, text=True,
                                 check=True).stdout.split()[1])
    if version < 253:
        pytest.skip(f"systemd {version} predates Type=notify-reload")
    hostagent = shutil.which("hostagent", path=str(Path(sys.executable).parent))
    assert hostagent is not None
    prefix = str(Path(hostagent).parent.parent)
    unit = tmp_path / "hostagent.service"
    unit.write_text((ROOT / "systemd" / "hostagent.service").read_text()
                    .replace("/usr/local/lib/hostagent", prefix))
    (tmp_path / "hostagent.service.d").mkdir()
    (tmp_path / "hostagent.service.d" / "notify-reload.conf").write_text(drop_in)
    verify = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                            timeout=60)
    assert verify.returncode == 0 and verify.stdout + verify.stderr == ""
