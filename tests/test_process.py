"""The real `hostagent` process: start, scrape, exit codes, SIGTERM during a scrape."""

from __future__ import annotations

import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

COMMAND = [sys.executable, "-m", "agent"]


class AgentProcess:
    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen([*COMMAND, *args], stderr=subprocess.PIPE, text=True,
                                     env=env)
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        self.address = self.wait_for(r"msg=listening .*address=(\S+)")

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)

    def wait_for(self, pattern: str, timeout: float = 15) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.log.append(line)
            if match := re.search(pattern, line):
                return match.group(1)
        raise AssertionError(f"no log line matching {pattern!r}; got {self.log}")

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://{self.address}{path}", timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def wait_ready(self) -> None:
        for _ in range(300):
            if self.get("/-/ready")[0] == 200:
                return
            time.sleep(0.02)
        raise AssertionError("never ready")


@pytest.fixture
def agent_process() -> Iterator[type[AgentProcess]]:
    started: list[AgentProcess] = []

    def start(*args: str) -> AgentProcess:
        process = AgentProcess(*args)
        started.append(process)
        return process

    yield start  # type: ignore[misc]
    for process in started:
        if process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait()


def test_runs_on_defaults_scrapes_and_stops_cleanly(agent_process) -> None:
    agent = agent_process("--web.listen-address", "127.0.0.1:0")
    agent.wait_ready()
    status, body = agent.get("/metrics")
    assert status == 200
    names = {f.name for f in text_string_to_metric_families(body.decode())}
    assert {"node_cpu_seconds", "node_memory_MemAvailable_bytes", "hostagent_build_info"} <= names
    agent.proc.send_signal(signal.SIGINT)
    assert agent.proc.wait(timeout=15) == 0


def big_textfile(directory: Path) -> None:
    """~6.5 MB of series in two files (each under the textfile collector's per-file cap):
    more than the kernel buffers, so a slow reader keeps a scrape open."""
    pad = "p" * 250
    for part in range(2):
        lines = ["# HELP padding_value Padding.", "# TYPE padding_value gauge"]
        lines += [f'padding_value{{n="{n:06d}{pad}"}} {n}'
                  for n in range(part * 12_000, (part + 1) * 12_000)]
        (directory / f"big{part}.prom").write_text("\n".join(lines) + "\n")


def test_sigterm_during_a_scrape_completes_it_and_exits_0(agent_process, tmp_path: Path) -> None:
    big_textfile(tmp_path)
    config = tmp_path / "hostagent.yml"
    config.write_text(f"collectors: {{textfile: {{directory: '{tmp_path}'}}}}\n")
    agent = agent_process("--config", str(config), "--web.listen-address", "127.0.0.1:0")
    agent.wait_ready()
    host, port = agent.address.rsplit(":", 1)
    with socket.socket() as slow:
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect((host, int(port)))
        slow.sendall(b"GET /metrics HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n")
        received = slow.recv(4096)
        agent.proc.send_signal(signal.SIGTERM)
        agent.wait_for(r'msg="(shutting down)"')
        time.sleep(0.3)
        assert agent.proc.poll() is None, "must wait for the in-flight scrape"
        with pytest.raises(OSError):
            socket.create_connection((host, int(port)), timeout=2).close()
        while chunk := slow.recv(1 << 20):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    length = int(re.search(rb"Content-Length: (\d+)", head, re.I).group(1))  # type: ignore[union-attr]
    assert len(body) == length > 4_000_000
    assert b"padding_value" in body and b"hostagent_build_info" in body
    assert agent.proc.wait(timeout=15) == 0


def test_cannot_bind_exits_3_with_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([*COMMAND, "--web.listen-address", f"127.0.0.1:{port}"],
                                capture_output=True, text=True, timeout=30)
    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == [
        f"hostagent: cannot listen on 127.0.0.1:{port}: Address already in use"]


def test_invalid_config_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.yml"
    config.write_text("collectors: {cpu: {interval: 0}}\n")
    result = subprocess.run([*COMMAND, "--config", str(config)], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip() == f"{config}: collectors.cpu.interval: must be greater than 0"


def test_collect_once_prints_an_exposition() -> None:
    result = subprocess.run([*COMMAND, "collect", "--once", "--collector.disable-defaults",
                             "--collector.cpu"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    names = {f.name for f in text_string_to_metric_families(result.stdout)}
    assert "node_cpu_seconds" in names and "node_memory_MemTotal_bytes" not in names
