"""/probe, /sd, /metrics, the status page and the systemd status line of a real agent running
the SSH worker against real sshd; asyncssh stays unloaded while SSH is off."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

from agent.agent import Agent
from agent.config import Config, ConfigSource
from tests.conftest import free_port
from tests.sshd import SshLab
from tests.test_web import running

COLLECTORS = {name: {"enabled": name == "load"} for name in (
    "cpu", "memory", "diskstats", "filesystem", "netdev", "system", "textfile", "vmstat",
    "netstat", "sockstat", "softnet", "udp_queues", "timex", "entropy", "conntrack", "arp",
    "netclass", "runtime")}


def agent_config(lab: SshLab, targets: list[Any], **ssh: Any) -> dict[str, Any]:
    settings = lab.config(targets, **ssh).model_dump(mode="json")
    return {"web": {"listen_address": "127.0.0.1:0", "enable_lifecycle": True},
            "scheduler": {"jitter": 0}, "collectors": COLLECTORS, "ssh": settings}


async def wait_for(check: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url) as response:
        return response.status, await response.text()


async def test_probe_sd_metrics_and_status(ssh_lab: SshLab, tmp_path: Path) -> None:
    sshd = ssh_lab.server()
    name = f"127.0.0.1:{sshd.ports[0]}"
    data = agent_config(ssh_lab, [{"target": name, "labels": {"role": "db"}}],
                        checks=[{"name": "loadavg", "command": "cat /proc/loadavg"}],
                        modules={"node": {"enabled": True}})
    path = tmp_path / "hostagent.yml"
    path.write_text(yaml.safe_dump(data))
    agent = Agent(Config.model_validate(data), source=ConfigSource(path))
    async with running(agent) as base, aiohttp.ClientSession() as session:
        async def probed() -> bool:
            return (await get(session, f"{base}/probe?target={name}"))[0] == 200

        await wait_for(probed, "the first round")
        status, text = await get(session, f"{base}/probe?target={name}")
        families = {f.name: f for f in text_string_to_metric_families(text)}
        assert families["hostagent_ssh_up"].samples[0].value == 1
        assert families["hostagent_ssh_up"].samples[0].labels == {}, "no target label"
        assert "node_load1" in families and "hostagent_ssh_check_success" in families
        assert all("target" not in s.labels and "role" not in s.labels
                   for f in families.values() for s in f.samples)
        status, text = await get(session, f"{base}/probe?target={name}&module=checks")
        assert status == 200
        assert {f.name for f in text_string_to_metric_families(text)} == {
            "hostagent_ssh_check_success", "hostagent_ssh_check_exit_status"}
        async with session.get(f"{base}/probe?target={name}", headers={
                "Accept": "application/openmetrics-text;version=1.0.0"}) as response:
            assert response.headers["Content-Type"].startswith("application/openmetrics-text")
            assert (await response.read()).endswith(b"# EOF\n")

        status, text = await get(session, f"{base}/sd")
        assert status == 200 and json.loads(text) == [{"targets": [name],
                                                        "labels": {"role": "db"}}]

        async def listed() -> bool:
            return f'hostagent_ssh_up{{role="db",target="{name}"}}' in (
                await get(session, f"{base}/metrics"))[1]

        await wait_for(listed, "the target's login series in /metrics")
        status, text = await get(session, f"{base}/metrics")
        metrics = {f.name: f for f in text_string_to_metric_families(text)}
        load = {tuple(sorted(s.labels.items())) for s in metrics["node_load1"].samples}
        assert load == {()}, "a remote host's node series are not this host's"

        status, page = await get(session, f"{base}/")
        assert "SSH targets up: 1 of 1" in page
        assert "1 ssh targets up of 1" in agent._status_line()

        # A reload adds a target and asks for remote node series on /metrics; the target
        # that did not change keeps its connection.
        second = ssh_lab.server()
        added = f"127.0.0.1:{second.ports[0]}"
        data["ssh"]["targets"].append(added)
        data["ssh"]["node_on_metrics"] = True
        path.write_text(yaml.safe_dump(data))
        async with session.post(f"{base}/-/reload") as response:
            assert response.status == 200

        async def both() -> bool:
            return (await get(session, f"{base}/probe?target={added}"))[0] == 200

        await wait_for(both, "the added target's first round")
        status, text = await get(session, f"{base}/probe?target={name}&module=login")
        handshakes = next(f for f in text_string_to_metric_families(text)
                          if f.name == "hostagent_ssh_handshakes")
        assert handshakes.samples[0].value == 1

        async def merged() -> bool:
            return f'node_load1{{role="db",target="{name}"}}' in (
                await get(session, f"{base}/metrics"))[1]

        await wait_for(merged, "node series of the target in /metrics")
        status, text = await get(session, f"{base}/metrics")
        metrics = {f.name: f for f in text_string_to_metric_families(text)}
        load = {tuple(sorted(s.labels.items())) for s in metrics["node_load1"].samples}
        assert () in load and (("role", "db"), ("target", name)) in load
        assert "hostagent_collector_dropped_families" not in metrics, "none dropped"

        # Switching SSH off removes the worker, its routes answer as for no targets.
        data["ssh"]["enabled"] = False
        path.write_text(yaml.safe_dump(data))
        async with session.post(f"{base}/-/reload") as response:
            assert response.status == 200
        assert (await get(session, f"{base}/sd")) == (200, "[]")
        assert (await get(session, f"{base}/probe?target={name}"))[0] == 404

        async def gone() -> bool:
            return "hostagent_ssh_up" not in (await get(session, f"{base}/metrics"))[1]

        await wait_for(gone, "the SSH series to go")
        assert "ssh targets" not in agent._status_line()


async def test_probe_refuses_what_is_not_configured(ssh_lab: SshLab) -> None:
    connections = 0

    async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.close()

    listener = await asyncio.start_server(count, "127.0.0.1", 0)
    unconfigured = f"127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    sshd = ssh_lab.server()
    name = f"127.0.0.1:{sshd.ports[0]}"
    agent = Agent(Config.model_validate(agent_config(ssh_lab, [name])))
    try:
        async with running(agent) as base, aiohttp.ClientSession() as session:
            for query, expected in (("", 400), ("?target=", 400), (f"?target={name}&module=x", 400),
                                    (f"?target={unconfigured}", 404),
                                    (f"?target=root@{unconfigured}", 404),
                                    (f"?target={name}&module=node", None)):
                status, text = await get(session, f"{base}/probe{query}")
                if expected is not None:
                    assert status == expected, (query, text)
                else:
                    assert status in (400, 503), "node is off: refused (or no round yet)"
            assert "target: missing parameter" in (await get(session, f"{base}/probe"))[1]
            await asyncio.sleep(0.2)
        assert connections == 0, "a request never makes the agent connect anywhere"
    finally:
        listener.close()
        await listener.wait_closed()


def test_asyncssh_is_not_imported_while_ssh_is_off() -> None:
    code = ("import sys, agent.agent, agent.cli, agent.config\n"
            "agent.config.load(None)\n"
            "print('asyncssh' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.strip() == "False"


async def test_sd_shards_agree_with_prometheus_hashmod(tmp_path: Path) -> None:
    """A real Prometheus discovering /sd and keeping hashmod 3 == 1 keeps exactly the targets
    the agent's shard "1/3" keeps (unreachable loopback targets: only the lists matter)."""
    from agent.ssh.targets import in_shard
    from tests.test_deploy_prometheus import Prometheus

    names = [f"127.0.0.1:{port}" for port in range(1, 40)]
    data = {"web": {"listen_address": "127.0.0.1:0"}, "scheduler": {"jitter": 0},
            "collectors": COLLECTORS,
            "ssh": {"enabled": True, "targets": names, "connect_timeout": 1,
                    "modules": {"login": {"interval": 3600}}}}
    agent = Agent(Config.model_validate(data))
    async with running(agent) as base:
        config = tmp_path / "prometheus.yml"
        config.write_text(yaml.safe_dump({"scrape_configs": [{
            "job_name": "ssh", "scrape_interval": "1h",
            "http_sd_configs": [{"url": f"{base}/sd", "refresh_interval": "5s"}],
            "relabel_configs": [
                {"source_labels": ["__address__"], "modulus": 3, "target_label": "__tmp_hash",
                 "action": "hashmod"},
                {"source_labels": ["__tmp_hash"], "regex": "1", "action": "keep"}]}]}))
        prometheus = Prometheus(config, tmp_path / "data", free_port())
        try:
            kept: set[str] = set()

            def discovered() -> bool:
                nonlocal kept
                body = prometheus.api("targets", state="any")
                active = body["data"]["activeTargets"]
                dropped = body["data"]["droppedTargets"]
                kept = {t["discoveredLabels"]["__address__"] for t in active}
                return len(active) + len(dropped) == len(names)

            await asyncio.to_thread(prometheus.wait, discovered, "Prometheus HTTP SD")
            assert kept == {n for n in names if in_shard(n, "1/3")}
            assert 0 < len(kept) < len(names)
        finally:
            prometheus.proc.terminate()
            prometheus.proc.wait(timeout=30)
