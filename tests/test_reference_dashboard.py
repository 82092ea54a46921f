"""A real Prometheus scrapes node_exporter and hostagent on this machine and evaluates every
expression of the reference "Node Exporter Full" dashboard against each: none may fail to
parse, and every one that returns data for node_exporter must return data for hostagent."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import free_port, require_tool
from tests.test_deploy_prometheus import Prometheus
from tests.test_process import AgentProcess

DASHBOARD = Path(__file__).parent / "fixtures" / "reference" / "node-exporter-full.dashboard.json"


def expressions(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return found + [e for value in node.values() for e in expressions(value)]
    if isinstance(node, list):
        return [e for value in node for e in expressions(value)]
    return []


@pytest.fixture
def scraped_pair(tmp_path: Path):
    exporter_port = free_port()
    exporter = subprocess.Popen(
        [require_tool("prometheus-node-exporter"),
         f"--web.listen-address=127.0.0.1:{exporter_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    agent = AgentProcess("--web.listen-address", "127.0.0.1:0")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": "node", "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]},
            {"job_name": "hostagent", "static_configs": [{"targets": [agent.address]}]},
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    prometheus = Prometheus(tmp_path / "prometheus.yml", tmp_path / "data", free_port())
    try:
        prometheus.wait(lambda: sum(t["health"] == "up" for t in
                                    prometheus.api("targets")["data"]["activeTargets"]) == 2,
                        "both targets up")
        time.sleep(5)  # enough samples for every rate() window below
        yield prometheus, {"node": f"127.0.0.1:{exporter_port}", "hostagent": agent.address}
    finally:
        prometheus.proc.terminate()
        prometheus.proc.wait(timeout=30)
        agent.proc.terminate()
        agent.proc.wait(timeout=30)
        exporter.terminate()
        exporter.wait(timeout=30)


def substitute(expr: str, job: str, instance: str) -> str:
    for variable, value in (("$node", instance), ("$job", job), ("$__rate_interval", "1m"),
                            ("$__interval", "15s"), ("$__range", "1h")):
        expr = expr.replace(variable, value)
    assert not re.search(r"\$\w", expr), f"unsubstituted variable in {expr}"
    return expr


def test_every_dashboard_query_that_has_data_for_node_exporter_has_it_for_hostagent(
    scraped_pair,
) -> None:
    prometheus, instances = scraped_pair
    exprs = expressions(json.loads(DASHBOARD.read_text())["panels"])
    assert len(exprs) > 250
    answered_by_node_exporter = 0
    missing = []
    for expr in exprs:
        results = {}
        for job, instance in instances.items():
            answer = prometheus.query(substitute(expr, job, instance))
            assert answer["status"] == "success", (expr, answer)
            results[job] = answer["data"]["result"]
        if results["node"]:
            answered_by_node_exporter += 1
            if not results["hostagent"]:
                missing.append(expr)
    assert answered_by_node_exporter > 100
    assert not missing, f"{len(missing)} queries answered for node_exporter only: {missing}"
