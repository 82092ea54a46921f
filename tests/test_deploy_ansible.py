"""The Ansible role, run for real: site.yml against localhost over the local connection, with
every path in a temporary root, installing hostagent from this checkout."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
ANSIBLE = ROOT / "deploy" / "ansible"
ROLE = ANSIBLE / "roles" / "hostagent"
UNIT = ROOT / "systemd" / "hostagent.service"
RELAY_UNIT = ROOT / "systemd" / "hostagent-relay.service"
RELAY_EXAMPLE = ROOT / "systemd" / "hostagent-relay.yml"
TREE_VERSION = re.search(r'__version__ = "(.+)"', (ROOT / "agent/__init__.py").read_text())[1]
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
SERVICE_MODULES = {"ansible.builtin.systemd_service", "ansible.builtin.systemd",
                   "ansible.builtin.service"}

TASK_HEADER = re.compile(r"^(?:TASK|RUNNING HANDLER) \[hostagent : (?P<name>.+?)\] \*+$")
TASK_STATUS = re.compile(r"^(?P<status>ok|changed|skipping|failed|fatal): \[")
RECAP = re.compile(r"^localhost\s+:\s+(?P<counts>(?:\w+=\d+\s*)+)$", re.MULTILINE)


def unit_with_paths(prefix: str, config_dir: str, default_dir: str) -> str:
    """The repository's unit with its three install paths replaced."""
    return (UNIT.read_text()
            .replace("/usr/local/lib/hostagent", prefix)
            .replace("/etc/hostagent/", f"{config_dir}/")
            .replace("/etc/default/hostagent", f"{default_dir}/hostagent"))


def flatten(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tasks with the tasks of their blocks (block, rescue, always) in place of the block."""
    flat = []
    for task in tasks:
        parts = [task[key] for key in ("block", "rescue", "always") if key in task]
        flat += [t for part in parts for t in flatten(part)] if parts else [task]
    return flat


def role_tasks(*files: str) -> list[dict[str, Any]]:
    names = files or [str(p.relative_to(ROLE)) for p in sorted(ROLE.glob("*/*.yml"))
                      if p.parent.name in ("tasks", "handlers")]
    return flatten([task for name in names for task in yaml.safe_load((ROLE / name).read_text())])


def module_of(task: dict[str, Any]) -> str:
    modules = [key for key in task if key.startswith("ansible.")]
    assert len(modules) == 1, task
    return modules[0]


def ansible_env(tmp: Path) -> dict[str, str]:
    """Ansible's own state under tmp, nothing in ~; the default callback without colour."""
    env = dict(os.environ)
    env.update(
        ANSIBLE_HOME=str(tmp / "ansible-home"),
        ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-local"),
        ANSIBLE_REMOTE_TEMP=str(tmp / "ansible-remote"),
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default",
        ANSIBLE_DISPLAY_SKIPPED_HOSTS="true",
        ANSIBLE_DISPLAY_OK_HOSTS="true",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_RETRY_FILES_ENABLED="false",
    )
    env.pop("ANSIBLE_CONFIG", None)
    return env


@dataclass
class Run:
    output: str
    tasks: dict[str, set[str]]  # task or handler name -> statuses it reported
    recap: dict[str, int]


def parse(output: str) -> Run:
    tasks: dict[str, set[str]] = {}
    current = None
    for line in output.splitlines():
        if header := TASK_HEADER.match(line):
            current = header["name"]
            tasks.setdefault(current, set())
        elif (status := TASK_STATUS.match(line)) and current is not None:
            tasks[current].add(status["status"])
    recap = RECAP.search(output)
    assert recap, output
    counts = dict(item.split("=") for item in recap["counts"].split())
    return Run(output, tasks, {key: int(value) for key, value in counts.items()})


def playbook(tmp: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    # Run from tmp so that no ansible.cfg in the caller's directory applies.
    return subprocess.run([str(ANSIBLE_PLAYBOOK), *(str(a) for a in args)], capture_output=True,
                          text=True, timeout=300, cwd=tmp, env=ansible_env(tmp))


@dataclass
class Deployment:
    root: Path
    variables: dict[str, Any]
    first: Run
    second: Run

    def path(self, name: str) -> Path:
        return Path(self.variables[name])


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    """site.yml run twice against localhost, everything under one temporary root, without
    systemd. The venv is a full one: pip installs this checkout and its dependencies, reusing
    pip's wheel cache (about half a minute)."""
    tmp = tmp_path_factory.mktemp("ansible")
    root = tmp / "root"
    relay_key = root / "etc/hostagent/relay/ops-wecom.key"
    relay_key.parent.mkdir(parents=True)
    relay_key.write_text("wecom-key\n")
    variables = {
        "hostagent_pip_source": str(ROOT),
        "hostagent_version": TREE_VERSION,
        "hostagent_python": sys.executable,
        "hostagent_prefix": str(root / "usr/local/lib/hostagent"),
        "hostagent_config_dir": str(root / "etc/hostagent"),
        "hostagent_unit_dir": str(root / "etc/systemd/system"),
        "hostagent_default_dir": str(root / "etc/default"),
        "hostagent_manage_service": False,
        "hostagent_listen_address": "127.0.0.1:19110",
        "hostagent_log_level": "debug",
        "hostagent_collectors": {"cpu": {"interval": 5}, "filesystem": {"mount_timeout": 2},
                                 "netdev": {"enabled": False}},
        "hostagent_textfile_directory": str(root / "var/lib/hostagent/textfile"),
        "hostagent_config_extra": {"scheduler": {"workers": 2}},
        "hostagent_args": ["--no-collector.textfile", "--log.level=warning"],
        "hostagent_relay_enabled": True,
        "hostagent_relay_config": {"listen_address": "127.0.0.1:19111", "routes": [
            {"name": "ops", "wecom": {"key_file": str(relay_key)}}]},
    }
    (tmp / "vars.json").write_text(json.dumps(variables))
    # Run as the current user: everything it writes is under tmp.
    (tmp / "inventory.ini").write_text(
        "[hostagent]\n"
        f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}"
        " ansible_become=false\n")
    runs = []
    for _ in range(2):
        done = playbook(tmp, "-i", tmp / "inventory.ini", ANSIBLE / "site.yml",
                        "-e", f"@{tmp / 'vars.json'}")
        assert done.returncode == 0, done.stdout + done.stderr
        runs.append(parse(done.stdout))
    return Deployment(root, variables, *runs)


def test_syntax_check(tmp_path: Path) -> None:
    checked = playbook(tmp_path, "-i", ANSIBLE / "inventory.ini", ANSIBLE / "site.yml",
                       "--syntax-check")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_tasks_are_named_and_use_builtin_modules() -> None:
    for task in role_tasks():
        assert task.get("name"), task
        assert module_of(task).startswith("ansible.builtin."), task["name"]
        assert module_of(task) not in ("ansible.builtin.shell", "ansible.builtin.raw")


def test_unit_template_is_the_repository_unit() -> None:
    """Rendered with the role's defaults, the unit template is systemd/hostagent.service."""
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    template = jinja2.Template((ROLE / "templates" / "hostagent.service.j2").read_text(),
                               keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    assert template.render(defaults) == UNIT.read_text()
    relay = jinja2.Template((ROLE / "templates" / "hostagent-relay.service.j2").read_text(),
                            keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    assert relay.render(defaults) == RELAY_UNIT.read_text()


def test_relay_example_is_the_repository_example() -> None:
    """Without hostagent_relay_config, relay.yml is systemd/hostagent-relay.yml (Ansible's
    file lookup strips the trailing newline; its template module keeps the one after it)."""
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    assert defaults["hostagent_relay_enabled"] is False and defaults["hostagent_relay_config"] == {}
    template = jinja2.Environment(trim_blocks=True, keep_trailing_newline=True,
                                  undefined=jinja2.StrictUndefined).from_string(
        (ROLE / "templates" / "hostagent-relay.yml.j2").read_text())

    def lookup(kind: str, name: str) -> str:
        assert kind == "ansible.builtin.file"
        return (ROLE / "files" / name).read_text().rstrip("\n")

    assert template.render(defaults, lookup=lookup) == RELAY_EXAMPLE.read_text()


def test_install_renders_a_valid_config(deployed: Deployment) -> None:
    hostagent = deployed.path("hostagent_prefix") / "bin" / "hostagent"
    assert hostagent.is_file()
    config = deployed.path("hostagent_config_dir") / "hostagent.yml"
    checked = subprocess.run([str(hostagent), "check-config", str(config)],
                             capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert yaml.safe_load(config.read_text()) == {
        "web": {"listen_address": "127.0.0.1:19110"},
        "collectors": {
            "cpu": {"interval": 5},
            "filesystem": {"mount_timeout": 2},
            "netdev": {"enabled": False},
            "textfile": {"directory": deployed.variables["hostagent_textfile_directory"]},
        },
        "logging": {"level": "debug"},
        "scheduler": {"workers": 2},
    }
    assert deployed.path("hostagent_textfile_directory").is_dir()
    # The installed agent runs with it.
    collected = subprocess.run(
        [str(hostagent), "collect", "--once", "--config", str(config),
         "--collector.disable-defaults", "--collector.load"],
        capture_output=True, text=True, timeout=60)
    assert collected.returncode == 0, collected.stderr
    assert "node_load1 " in collected.stdout


def test_unit_and_env_file_point_into_the_prefix(deployed: Deployment) -> None:
    unit = deployed.path("hostagent_unit_dir") / "hostagent.service"
    assert unit.read_text() == unit_with_paths(deployed.variables["hostagent_prefix"],
                                               deployed.variables["hostagent_config_dir"],
                                               deployed.variables["hostagent_default_dir"])
    env_file = deployed.path("hostagent_default_dir") / "hostagent"
    assert f"EnvironmentFile=-{env_file}\n" in unit.read_text()
    assert ('HOSTAGENT_ARGS="--no-collector.textfile --log.level=warning"\n'
            in env_file.read_text())


def test_relay_unit_and_config_are_installed_and_checked(deployed: Deployment) -> None:
    unit = deployed.path("hostagent_unit_dir") / "hostagent-relay.service"
    prefix, config_dir = (deployed.variables[k] for k in ("hostagent_prefix",
                                                           "hostagent_config_dir"))
    assert unit.read_text() == RELAY_UNIT.read_text().replace(
        "/usr/local/lib/hostagent", prefix).replace("/etc/hostagent/", f"{config_dir}/")
    config = Path(config_dir) / "relay.yml"
    assert yaml.safe_load(config.read_text()) == deployed.variables["hostagent_relay_config"]
    checked = subprocess.run([f"{prefix}/bin/hostagent", "relay", "--check", "--config",
                              str(config)], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_second_run_changes_nothing(deployed: Deployment) -> None:
    assert deployed.first.recap["changed"] > 0
    assert deployed.second.recap["changed"] == 0, deployed.second.output
    assert deployed.second.recap["failed"] == 0
    # The checkout is a directory source: installed once, not rebuilt on every run.
    assert deployed.second.tasks["Install hostagent into the release"] == {"skipping"}


def test_without_service_management_only_service_tasks_are_skipped(
        deployed: Deployment) -> None:
    """With hostagent_manage_service false nothing is started, restarted, reloaded or gated:
    exactly the tasks and handlers conditioned on it were skipped (the first run switches to
    the release and notifies both handlers, so each came up)."""
    service_tasks = {task["name"] for task in role_tasks("tasks/main.yml", "handlers/main.yml")
                     if "hostagent_manage_service" in str(task.get("when", ""))}
    assert {"Restart hostagent on the new release", "Gate the new release on its health",
            "Start hostagent", "Reload hostagent", "Restart hostagent",
            "Enable and start the relay", "Stop and disable the relay",
            "Reload hostagent-relay", "Restart hostagent-relay"} <= service_tasks
    # systemd is only reached through them (restart.yml is included only by them).
    assert not any(module_of(task) in SERVICE_MODULES and task["name"] not in service_tasks
                   for task in role_tasks("tasks/main.yml", "handlers/main.yml"))
    reached = service_tasks & deployed.first.tasks.keys()
    assert service_tasks - reached == {  # the rescue of a failed gate
        "Restart hostagent on the release that ran before", "Gate the release that ran before"}
    skipped = {name for name, statuses in deployed.first.tasks.items() if "skipping" in statuses}
    # A first install has no release to replace and none to prune.
    assert skipped - {"Point previous at the release being replaced",
                      "Remove releases beyond hostagent_keep_releases"} == reached
    for name in reached:
        assert deployed.first.tasks[name] == {"skipping"}, deployed.first.output
    assert deployed.first.recap["failed"] == 0
