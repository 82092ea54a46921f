from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest


def free_port() -> int:
    """A loopback port that was free a moment ago (for tools that cannot take port 0)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def require_tool(name: str) -> str:
    """Path of a real external tool. Missing tools fail the test unless HOSTAGENT_ALLOW_MISSING=1:
    the README's test command installs them, so absence means a broken set-up, not a skip."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("HOSTAGENT_ALLOW_MISSING") == "1":
            pytest.skip(f"{name} not installed")
        pytest.fail(f"{name} not found: run the README's test set-up command")
    return path


@pytest.fixture
def node_exporter():
    """Start the real node_exporter on a loopback port: node_exporter(*flags) -> metrics URL."""
    binary = require_tool("prometheus-node-exporter")
    procs: list[subprocess.Popen[bytes]] = []

    def start(*flags: str) -> str:
        port = free_port()
        proc = subprocess.Popen(
            [binary, f"--web.listen-address=127.0.0.1:{port}", *flags],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        url = f"http://127.0.0.1:{port}/metrics"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(url, timeout=1).read()
                return url
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("node_exporter did not start")

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def ssh_user_key(tmp_path_factory):
    """One ed25519 user key (ssh-keygen) for every test's sshd."""
    from pathlib import Path

    from tests.sshd import SSHD, user_key

    if not Path(SSHD).exists():
        require_tool("sshd")
    require_tool("ssh-keygen")
    return user_key(tmp_path_factory.mktemp("ssh-user"))


@pytest.fixture
def ssh_lab(tmp_path, ssh_user_key):
    """Real OpenSSH servers on loopback ports (lab.server()), killed after the test."""
    from tests.sshd import SshLab

    lab = SshLab(tmp_path, ssh_user_key)
    yield lab
    lab.close()
