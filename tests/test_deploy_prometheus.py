"""The deploy kit against the real tools: promtool, amtool, and a real Prometheus scraping a
real hostagent that evaluates every alert expression and every dashboard query."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import free_port, require_tool
from tests.test_process import AgentProcess

ROOT = Path(__file__).resolve().parent.parent
PROM = ROOT / "deploy" / "prometheus"
RULE_FILES = sorted((PROM / "rules").glob("*.rules.yml"))
DASHBOARD = ROOT / "deploy" / "grafana" / "hostagent.json"
ALERTMANAGER = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"

# Series that exist only when the SSH worker has targets configured; the end-to-end agent here
# runs without SSH targets.
NEEDS_SSH_TARGETS = re.compile(r"hostagent_ssh_")


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120,
                          cwd=PROM)


def alerts() -> list[dict[str, Any]]:
    return [rule for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]
            for rule in group["rules"] if "alert" in rule]


def test_config_and_rules_pass_promtool() -> None:
    promtool = require_tool("promtool")
    checked = run(promtool, "check", "config", PROM / "prometheus.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    checked = run(promtool, "check", "rules", *RULE_FILES)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = run(promtool, "test", "rules", PROM / "tests" / "rules_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_is_annotated_and_tested_firing_and_silent() -> None:
    tests = yaml.safe_load((PROM / "tests" / "rules_test.yml").read_text())["tests"]
    cases = [case for group in tests for case in group.get("alert_rule_test", [])]
    for rule in alerts():
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert {"summary", "description"} <= rule["annotations"].keys(), name
        mine = [case for case in cases if case["alertname"] == name]
        assert any(case["exp_alerts"] for case in mine), f"{name}: no firing case"
        assert any(not case["exp_alerts"] for case in mine), f"{name}: no silent case"


def test_alertmanager_config_and_routes() -> None:
    amtool = require_tool("amtool")
    checked = run(amtool, "check-config", ALERTMANAGER)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for labels, expected in ((["severity=critical", "alertname=HostDown"],
                              "oncall-dingtalk,ops-wecom"),
                             (["severity=warning", "alertname=HostHighLoad"], "ops-wecom")):
        routed = run(amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER}",
                     *labels)
        assert routed.stdout.strip() == expected, routed.stdout + routed.stderr


def selectors(expr: str) -> list[str]:
    """The series an expression reads: our metrics, recording rules and `up`, with matchers."""
    pattern = r"(?<![\w:])((?:node|hostagent)_\w+|[a-z_]+:[\w:]+|up(?=\{))(\{[^}]*\})?"
    return [name + (matchers or "") for name, matchers in re.findall(pattern, expr)]


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "instance", "job"} <= variables
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"]
            for target in panel.get("targets", [])]


class Prometheus:
    def __init__(self, config: Path, data: Path, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [require_tool("prometheus"), f"--config.file={config}",
             f"--storage.tsdb.path={data}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.base}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return json.loads(exc.read())

    def query(self, expr: str) -> dict[str, Any]:
        return self.api("query", query=expr)

    def wait(self, check: Any, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except OSError:
                pass
            time.sleep(0.25)
        raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def stack(tmp_path: Path):
    """A real hostagent and a real Prometheus using deploy/prometheus (1 s intervals)."""
    agent = AgentProcess("--web.listen-address", "127.0.0.1:0")
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(PROM / pattern) for pattern in config["rule_files"]]
    config.pop("alerting")
    job = config["scrape_configs"][0]
    job["static_configs"][0]["targets"] = [agent.address]
    job["file_sd_configs"][0]["files"] = [str(tmp_path / "none-*.yml")]
    ssh_job = config["scrape_configs"][1]
    assert ssh_job["metrics_path"] == "/probe"
    ssh_job["http_sd_configs"][0]["url"] = f"http://{agent.address}/sd"
    ssh_job["relabel_configs"][-1]["replacement"] = agent.address
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    prometheus = Prometheus(tmp_path / "prometheus.yml", tmp_path / "data", free_port())
    try:
        prometheus.wait(lambda: any(t["health"] == "up" for t in
                                    prometheus.api("targets")["data"]["activeTargets"]),
                        "the agent target to be up")
        yield prometheus, agent.address
    finally:
        prometheus.proc.terminate()
        prometheus.proc.wait(timeout=30)
        agent.proc.terminate()
        agent.proc.wait(timeout=30)


def test_prometheus_evaluates_every_alert_and_panel(stack) -> None:
    prometheus, instance = stack

    def rules_healthy() -> bool:
        groups = prometheus.api("rules")["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        return len(rules) > 0 and all(r["health"] == "ok" and r.get("lastEvaluation", "")
                                      [:4] not in ("", "0001") for r in rules)

    prometheus.wait(rules_healthy, "every rule to be evaluated without error")
    # Two rate() windows' worth of samples.
    time.sleep(4)
    groups = prometheus.api("rules")["data"]["groups"]
    assert {r["name"] for g in groups for r in g["rules"] if r["type"] == "alerting"} == \
        {a["alert"] for a in alerts()}

    empty = []
    for rule in alerts():
        result = prometheus.query(rule["expr"])
        assert result["status"] == "success", (rule["alert"], result)
        for selector in selectors(rule["expr"]):
            if NEEDS_SSH_TARGETS.match(selector):
                continue
            if not prometheus.query(selector)["data"]["result"]:
                empty.append((rule["alert"], selector))
    assert not empty, f"alert inputs with no data: {empty}"

    substitutions = {"$instance": instance, "$job": "hostagent", "$__rate_interval": "1m",
                     "${datasource}": ""}
    for title, expr in dashboard_queries():
        for variable, value in substitutions.items():
            expr = expr.replace(variable, value)
        result = prometheus.query(expr)
        assert result["status"] == "success", (title, expr, result)
        if not NEEDS_SSH_TARGETS.search(expr):
            assert result["data"]["result"], f"panel {title!r} has no data: {expr}"
    variable_query = f'hostagent_build_info{{job=~"hostagent",instance="{instance}"}}'
    assert prometheus.query(variable_query)["data"]["result"]
