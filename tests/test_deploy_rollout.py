"""A fleet rollout, for real: site.yml against three "hosts" on this machine (one prefix,
config, pid file and loopback listen port each, reached with the local connection), the agents
started and stopped by the role's own steps (start-stop-daemon: no systemd here), one host per
batch. The local connection keeps the test off the login shell's start-up files; the role's
tasks are the same over SSH.

1. 1.0.0 everywhere; 2. a good 2.0.0: every host upgraded and healthy, 1.0.0 kept as previous;
3. a 3.0.0 that cannot start on the second host: the first batch upgraded, the second switched
back to 2.0.0 by itself, the third untouched, the play failed; 4. `--tags rollback` to 2.0.0."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import release_builds
from tests.conftest import require_tool
from tests.sshd import free_ports
from tests.test_deploy_ansible import ANSIBLE, ANSIBLE_PLAYBOOK, ansible_env

HOSTS = ("h1", "h2", "h3")
# The faulty release exits at start where its prefix holds a file named `fault`.
FAULT = '''
import os as _os
import sys as _sys
if "run" in _sys.argv and _os.path.exists(_os.path.join(_sys.prefix, "..", "..", "fault")):
    raise SystemExit("injected fault: this release cannot start here")
'''


def load_build() -> object:
    spec = importlib.util.spec_from_file_location("build", release_builds.BUILD_PY)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def inject_fault(source: Path) -> None:
    init = source / "agent" / "__init__.py"
    init.write_text(init.read_text() + FAULT)


@dataclass
class Host:
    name: str
    root: Path
    port: int

    @property
    def prefix(self) -> Path:
        return self.root / "opt"

    def link(self, name: str) -> str:
        path = self.prefix / name
        return os.readlink(path) if path.is_symlink() else ""

    def pid(self) -> int:
        return int((self.root / "hostagent.pid").read_text())

    def version(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as r:
            body = r.read().decode()
        found = re.search(r'^hostagent_build_info\{(?:.*,)?version="([^"]+)"', body, re.M)
        assert found, body
        return found.group(1)


@dataclass
class Fleet:
    tmp: Path
    hosts: list[Host]
    inventory: Path

    def play(self, *args: str) -> subprocess.CompletedProcess[str]:
        try:
            return self._play(*args)
        except subprocess.TimeoutExpired as expired:
            output = expired.stdout or b""
            text = output.decode() if isinstance(output, bytes) else output
            raise AssertionError(f"ansible-playbook timed out:\n{text[-3000:]}") from None

    def _play(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ANSIBLE_PLAYBOOK), "-i", str(self.inventory), str(ANSIBLE / "site.yml"),
             "-e", f"@{self.tmp / 'vars.json'}", *args],
            capture_output=True, text=True, timeout=240, cwd=self.tmp,
            env={**ansible_env(self.tmp), "ANSIBLE_FORKS": "3"})


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    require_tool("start-stop-daemon")
    build = load_build()
    wheels = tmp_path / "wheels"
    for version, edit in (("1.0.0", None), ("2.0.0", None), ("3.0.0", inject_fault)):
        wheel = build.own_wheel(  # type: ignore[attr-defined]
            version, tmp_path / f"build-{version}", edit)
        wheels.mkdir(exist_ok=True)
        wheel.rename(wheels / wheel.name)
    agent_ports = free_ports(len(HOSTS))
    hosts = [Host(name, tmp_path / name, port)
             for name, port in zip(HOSTS, agent_ports, strict=True)]
    lines = ["[hostagent]"]
    for host in hosts:
        host.root.mkdir()
        lines.append(
            f"{host.name} ansible_connection=local"
            f" hostagent_prefix={host.prefix} hostagent_config_dir={host.root}/etc"
            f" hostagent_default_dir={host.root}/default hostagent_unit_dir={host.root}/unit"
            f" hostagent_pid_file={host.root}/hostagent.pid"
            f" hostagent_log_file={host.root}/hostagent.log"
            f" hostagent_listen_address=127.0.0.1:{host.port}")
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("\n".join(lines) + "\n[hostagent:vars]\n"
                         f"ansible_python_interpreter={sys.executable}\n"
                         "ansible_become=false\n")
    (tmp_path / "vars.json").write_text(json.dumps({
        "hostagent_service_manager": "process",
        "hostagent_python": "/usr/bin/python3",
        "hostagent_pip_extra_args": f"--no-index --find-links {release_builds.wheels()}"
                                    f" --find-links {wheels}",
        "hostagent_gate_timeout": 8,
        "hostagent_collectors": {"filesystem": {"mount_timeout": 2}},
    }))
    fleet = Fleet(tmp_path, hosts, inventory)
    yield fleet
    for host in hosts:
        pid_file = host.root / "hostagent.pid"
        subprocess.run(["start-stop-daemon", "--stop", "--oknodo", "--retry", "TERM/10/KILL/5",
                        "--pidfile", str(pid_file)], capture_output=True, timeout=60)


def test_rollout_gates_each_batch_and_rolls_back_by_itself(fleet: Fleet) -> None:
    h1, h2, h3 = fleet.hosts
    first = fleet.play("-e", "hostagent_version=1.0.0", "-e", "hostagent_serial=3")
    assert first.returncode == 0, first.stdout + first.stderr
    assert [h.version() for h in fleet.hosts] == ["1.0.0"] * 3

    good = fleet.play("-e", "hostagent_version=2.0.0")
    assert good.returncode == 0, good.stdout + good.stderr
    assert [h.version() for h in fleet.hosts] == ["2.0.0"] * 3
    assert [(h.link("current"), h.link("previous")) for h in fleet.hosts] == [
        ("releases/2.0.0", "releases/1.0.0")] * 3
    assert good.stdout.count("TASK [hostagent : Wait for /-/ready]") == 3  # three batches

    (h2.prefix / "fault").write_text("")
    pids = {h.name: h.pid() for h in fleet.hosts}
    bad = fleet.play("-e", "hostagent_version=3.0.0")
    output = bad.stdout + bad.stderr
    assert bad.returncode != 0, output
    assert "hostagent 3.0.0 failed its health gate" in output and "rolled back to 2.0.0" in output
    # Batch 1 took the release; batch 2 was switched back and runs 2.0.0 again; batch 3 was
    # never touched: same process, same links.
    assert (h1.version(), h1.link("current"), h1.link("previous")) == (
        "3.0.0", "releases/3.0.0", "releases/2.0.0")
    assert (h2.version(), h2.link("current"), h2.link("previous")) == (
        "2.0.0", "releases/2.0.0", "releases/1.0.0")
    assert h2.pid() != pids["h2"]
    assert "injected fault" in (h2.root / "hostagent.log").read_text()
    assert (h3.version(), h3.link("current"), h3.pid()) == ("2.0.0", "releases/2.0.0", pids["h3"])
    assert not (h3.prefix / "releases" / "3.0.0").exists()
    assert "h3" not in output.split("PLAY RECAP")[0].split("hostagent 3.0.0 failed")[-1]

    # The fleet back to 2.0.0 on demand: only h1 changes.
    back = fleet.play("--tags", "rollback", "-e", "hostagent_rollback_version=2.0.0")
    assert back.returncode == 0, back.stdout + back.stderr
    assert [h.version() for h in fleet.hosts] == ["2.0.0"] * 3
    assert (h1.link("current"), h1.link("previous")) == ("releases/2.0.0", "releases/3.0.0")
    assert h3.pid() == pids["h3"]
