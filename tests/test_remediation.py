"""Self-healing rules: real processes restarted by a rule, tiers walked and escalated to a real
Alertmanager, hourly limits, dry runs, hung actions, SSH targets through real sshd, reloads."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from agent.config import ConfigError, build
from agent.remediation.condition import parse_condition
from agent.remediation.engine import Engine
from agent.remediation.settings import RemediationConfig
from tests.conftest import free_port
from tests.sshd import SshLab


def gauge(metric: str, value: float, **labels: str) -> Metric:
    family = GaugeMetricFamily(metric, "x", labels=list(labels))
    family.add_metric(list(labels.values()), value)
    return family


@pytest.mark.parametrize(("text", "holds"), [
    ('node_systemd_unit_state{name="nginx.service",state="failed"} == 1', True),
    ('node_systemd_unit_state{name="nginx.service",state="active"} == 1', False),
    ('node_systemd_unit_state{name=~"ng.*",state!="active"} >= 1', True),
    ('node_systemd_unit_state{name!~"ng.*"} == 1', False),
    ("node_filesystem_avail_bytes < 1e9", False),  # no such series: does not hold
    ("node_systemd_unit_state > 0.5", True),
    ('node_systemd_unit_state{name="café\\"s \\\\ unit\\n"} == 2', True),  # UTF-8, escapes
    ('node_systemd_unit_state{name=~"caf.\\"s \\\\\\\\ unit\\s"} == 2', True),
])
def test_conditions_as_a_prometheus_selector_and_comparison(text: str, holds: bool) -> None:
    families = [gauge("node_systemd_unit_state", 1, name="nginx.service", state="failed"),
                gauge("node_systemd_unit_state", 0, name="nginx.service", state="active"),
                gauge("node_systemd_unit_state", 2, name='café"s \\ unit\n')]
    assert parse_condition(text).holds(families) is holds


@pytest.mark.parametrize(("rule", "problem"), [
    ({"condition": {"metric": "up =="}}, "expected NAME{label"),
    ({"condition": {"metric": 'up{a~"x"} == 1'}}, "invalid label matcher"),
    ({"condition": {}}, "give exactly one of metric, command, ssh_check"),
    ({"tiers": [{"command": "systemctl restart nginx"}]}, "set shell: true"),
    ({"target": "local", "condition": {"ssh_check": {"check": "x"}}}, "needs an SSH target"),
    ({"interval": 0}, "interval: must be greater than 0"),
])
def test_bad_rules_are_one_line_naming_the_field(rule: dict[str, Any], problem: str) -> None:
    base = {"name": "r", "condition": {"metric": "up == 0"}, "tiers": [{"command": ["true"]}]}
    with pytest.raises(ConfigError) as info:
        build({"remediation": {"rules": [{**base, **rule}]}})
    (line,) = info.value.problems
    assert line.startswith("remediation.rules.0") and problem in line


def test_duplicate_rule_names_are_refused() -> None:
    rule = {"name": "r", "condition": {"metric": "up == 0"}, "tiers": [{"command": ["true"]}]}
    with pytest.raises(ConfigError, match="duplicate rule names: r"):
        build({"remediation": {"rules": [rule, rule]}})


# --- the engine against real processes -------------------------------------------------------

async def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def config(rules: list[dict[str, Any]], **settings: Any) -> RemediationConfig:
    loaded = build({"remediation": {"rules": rules, **settings}}).remediation
    assert isinstance(loaded, RemediationConfig)
    return loaded


def port_check(port: int) -> dict[str, Any]:
    code = f"import socket; socket.create_connection(('127.0.0.1', {port}), 1)"
    return {"command": {"argv": [sys.executable, "-c", code], "timeout": 5}}


class Published:
    def __init__(self) -> None:
        self.families: list[Metric] = []

    def __call__(self, families: list[Metric]) -> None:
        self.families = families

    def value(self, name: str, **labels: str) -> float:
        for family in self.families:
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v
                                               for k, v in labels.items()):
                    return sample.value
        return 0.0


def serve_command(port: int, tag: str) -> str:
    """Starts a loopback HTTP service that outlives the action (its own session)."""
    return (f"setsid {sys.executable} -m http.server {port} --bind 127.0.0.1 "
            f"--directory /tmp >/dev/null 2>&1 < /dev/null & echo {tag}")


def kill_matching(pattern: str) -> None:
    subprocess.run(["pkill", "-f", pattern], check=False)


@pytest.fixture
def service_port() -> Iterator[int]:
    port = free_port()
    yield port
    kill_matching(f"http.server {port} ")


async def test_a_killed_service_is_restarted_and_the_condition_clears(service_port: int) -> None:
    published = Published()
    engine = Engine(lambda target: [], published)
    rule = {"name": "web", "condition": port_check(service_port), "interval": 0.2,
            "cooldown": 0, "tiers": [{"command": serve_command(service_port, "started"),
                                      "shell": True, "verify": 15}]}
    await engine.apply(config([rule]))
    try:
        await wait_until(lambda: published.value("hostagent_remediation_episodes_total",
                                                 rule="web", outcome="recovered") == 1)
        with urllib.request.urlopen(f"http://127.0.0.1:{service_port}/", timeout=5) as r:
            assert r.status == 200
        kill_matching(f"http.server {service_port} ")  # the service dies again
        await wait_until(lambda: published.value("hostagent_remediation_episodes_total",
                                                 rule="web", outcome="recovered") == 2)
        assert published.value("hostagent_remediation_actions_total", rule="web", tier="1",
                               result="success") == 2
        await wait_until(lambda: published.value("hostagent_remediation_condition",
                                                 rule="web") == 0)
    finally:
        await engine.stop()


class Alertmanager:
    def __init__(self, directory: Path) -> None:
        binary = shutil.which("prometheus-alertmanager")
        if binary is None:
            pytest.fail("prometheus-alertmanager is not installed (make test installs it)")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (directory / "am.yml").write_text("route: {receiver: none}\nreceivers: [{name: none}]\n")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={directory / 'am.yml'}", f"--storage.path={directory}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=",
             "--log.level=warn"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(self.url + "/-/ready", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def alerts(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(self.url + "/api/v2/alerts", timeout=5) as response:
            alerts: list[dict[str, Any]] = json.load(response)
        return alerts

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[Alertmanager]:
    am = Alertmanager(tmp_path)
    yield am
    am.close()


async def test_a_service_that_stays_down_walks_every_tier_and_escalates(
        alertmanager: Alertmanager, tmp_path: Path) -> None:
    fixed = tmp_path / "fixed"
    published = Published()
    engine = Engine(lambda target: [], published)
    check = {"command": {"argv": ["test", "-e", str(fixed)]}}
    rule = {"name": "stuck", "condition": check, "interval": 0.2, "labels": {"team": "ops"},
            "tiers": [{"command": ["sh", "-c", "echo first tier; exit 3"], "attempts": 2,
                       "verify": 0.3},
                      {"command": ["echo", "second tier"], "verify": 0.3}]}
    await engine.apply(config([rule], alertmanager_url=alertmanager.url))
    try:
        await wait_until(lambda: any(a["labels"].get("rule") == "stuck"
                                     for a in alertmanager.alerts()))
        (alert,) = [a for a in alertmanager.alerts() if a["labels"].get("rule") == "stuck"]
        assert alert["labels"]["alertname"] == "HostagentRemediationFailed"
        assert alert["labels"]["team"] == "ops" and alert["labels"]["instance"] == "local"
        description = alert["annotations"]["description"]
        assert description.count("tier 1 attempt") == 2 and "tier 2 attempt 1" in description
        assert "first tier" in description and "exit 3" in description
        assert published.value("hostagent_remediation_actions_total", rule="stuck", tier="1",
                               result="failure") == 2
        assert published.value("hostagent_remediation_episodes_total", rule="stuck",
                               outcome="escalated") == 1
        fixed.touch()  # the manual fix
        await wait_until(lambda: not any(a["labels"].get("rule") == "stuck"
                                         for a in alertmanager.alerts()))
    finally:
        await engine.stop()
    # No episode ran after the escalation: the tiers ran once each attempt.
    assert published.value("hostagent_remediation_actions_total", rule="stuck", tier="2",
                           result="success") == 1


async def test_flapping_stops_at_the_hourly_limit(tmp_path: Path) -> None:
    healthy = tmp_path / "healthy"
    published = Published()
    engine = Engine(lambda target: [], published)
    rule = {"name": "flappy", "condition": {"command": {"argv": ["test", "-e", str(healthy)]}},
            "interval": 0.1, "cooldown": 0, "max_actions_per_hour": 3,
            "tiers": [{"command": ["touch", str(healthy)], "verify": 5}]}
    await engine.apply(config([rule]))

    async def break_it() -> None:  # the service falls over again as soon as it is fixed
        while True:
            healthy.unlink(missing_ok=True)
            await asyncio.sleep(0.3)

    breaker = asyncio.create_task(break_it())
    try:
        await wait_until(lambda: published.value("hostagent_remediation_episodes_total",
                                                 rule="flappy", outcome="limited") == 1)
    finally:
        breaker.cancel()
        await engine.stop()
    assert published.value("hostagent_remediation_actions_total", rule="flappy", tier="1",
                           result="success") == 3


async def test_dry_run_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    published = Published()
    engine = Engine(lambda target: [gauge("node_load1", 9)], published)
    rule = {"name": "dry", "condition": {"metric": "node_load1 > 1"}, "interval": 0.1,
            "cooldown": 0, "tiers": [{"command": ["touch", str(marker)]}]}
    await engine.apply(config([rule], dry_run=True))
    try:
        await wait_until(lambda: published.value("hostagent_remediation_actions_total",
                                                 rule="dry", result="dry_run") >= 2)
    finally:
        await engine.stop()
    assert not marker.exists()


def running(pattern: str) -> bool:
    return subprocess.run(["pgrep", "-f", pattern], capture_output=True).returncode == 0


async def test_a_hung_action_is_killed_at_its_timeout() -> None:
    published = Published()
    engine = Engine(lambda target: [gauge("node_load1", 9)], published)
    naptime = "31.4159"
    rule = {"name": "hang", "condition": {"metric": "node_load1 > 1"}, "interval": 0.1,
            "cooldown": 60, "tiers": [{"command": ["sh", "-c", f"sleep {naptime}"],
                                       "timeout": 0.5, "verify": 0.1}]}
    await engine.apply(config([rule]))
    try:
        await wait_until(lambda: published.value("hostagent_remediation_actions_total",
                                                 rule="hang", result="timeout") == 1, 10)
        await wait_until(lambda: not running(f"sleep {naptime}"), 5)  # its child too
    finally:
        await engine.stop()


async def test_a_reload_that_removes_a_rule_ends_its_episode(tmp_path: Path) -> None:
    published = Published()
    engine = Engine(lambda target: [gauge("node_load1", 9)], published)
    naptime = "27.1828"
    rule = {"name": "long", "condition": {"metric": "node_load1 > 1"}, "interval": 0.1,
            "tiers": [{"command": ["sleep", naptime], "timeout": 60}]}
    await engine.apply(config([rule]))
    try:
        await wait_until(lambda: running(f"sleep {naptime}"))
        await engine.apply(config([]))  # the reload
        await wait_until(lambda: not running(f"sleep {naptime}"), 5)
        assert "long" not in engine.runners
        assert published.value("hostagent_remediation_condition", rule="long") == 0
    finally:
        await engine.stop()


async def test_a_rule_on_an_ssh_target_runs_its_action_there(ssh_lab: SshLab,
                                                             tmp_path: Path) -> None:
    from agent.exposition.registry import Registry
    from agent.ssh import SshSupervisor

    sshd = ssh_lab.server()
    target = f"127.0.0.1:{sshd.ports[0]}"
    flag = tmp_path / "repaired-over-ssh"
    checks = [{"name": "repaired", "command": f"test -e {flag}"}]
    ssh = SshSupervisor(Registry())
    await ssh.apply(ssh_lab.config([target], checks=checks,
                                   modules={"checks": {"interval": 0.5}}))
    published = Published()
    engine = Engine(lambda name: [], published, ssh.run_on, ssh.check_success)
    rule = {"name": "remote", "target": target, "interval": 0.2,
            "condition": {"ssh_check": {"check": "repaired"}},
            "tiers": [{"command": ["touch", str(flag)], "verify": 15}]}
    try:
        await wait_until(lambda: ssh.check_success(target, "repaired") is False)
        await engine.apply(config([rule]))
        await wait_until(lambda: published.value("hostagent_remediation_episodes_total",
                                                 rule="remote", outcome="recovered") == 1)
        assert flag.exists()
    finally:
        await engine.stop()
        await ssh.stop()


def test_remediation_test_prints_what_would_run(tmp_path: Path) -> None:
    path = tmp_path / "agent.yml"
    path.write_text(
        "remediation:\n  rules:\n    - name: busy\n      condition: {metric: 'node_load1 >= 0'}\n"
        "      for: 30\n      tiers:\n        - command: [systemctl, restart, nginx]\n")
    result = subprocess.run([sys.executable, "-m", "agent", "remediation", "test", "busy",
                             "--config", str(path), "--collector.disable-defaults",
                             "--collector.loadavg"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("rule busy: condition holds (1 matching series")
    assert "tier 1 once it has held for 30 s: on local: systemctl restart nginx" in lines[1]
    missing = subprocess.run([sys.executable, "-m", "agent", "remediation", "test", "nope",
                              "--config", str(path)], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "no remediation rule 'nope'" in missing.stderr




async def test_a_catastrophic_check_regex_neither_freezes_the_loop_nor_passes() -> None:
    from agent.remediation.engine import RuleRunner

    engine = Engine(lambda target: [], Published())
    engine.matcher.timeout = 0.5
    code = "print('a' * 40000 + '!')"
    rule = config([{"name": "re", "condition": {"command": {
        "argv": [sys.executable, "-c", code], "regex": r"^(a|aa)+$"}},
        "tiers": [{"command": ["true"]}]}]).rules[0]
    loop = asyncio.get_running_loop()
    fired = asyncio.Event()
    loop.call_later(0.05, fired.set)
    holds = asyncio.ensure_future(RuleRunner(rule, engine).holds())
    await asyncio.wait_for(fired.wait(), 5)  # the loop kept turning while the regex ran
    assert await asyncio.wait_for(holds, 30) is True  # out of time: the check failed
    await engine.stop()


async def test_a_failed_evaluation_does_not_end_the_rule() -> None:
    calls = [0]

    def flaky(target: str) -> list[Metric]:
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError("the registry was not ready")
        return [gauge("node_load1", 9)]

    published = Published()
    engine = Engine(flaky, published)
    rule = {"name": "flaky", "condition": {"metric": "node_load1 > 1"}, "interval": 0.05,
            "tiers": [{"command": ["true"]}]}
    await engine.apply(config([rule], dry_run=True))
    try:
        await wait_until(lambda: published.value("hostagent_remediation_actions_total",
                                                 rule="flaky", result="dry_run") >= 1)
    finally:
        await engine.stop()
    assert published.value("hostagent_remediation_episodes_total", rule="flaky",
                           outcome="error") == 1
