"""What only some configurations use is imported only by them: an agent on its defaults (SSH
off, no rules, no remote write, no basic auth) never loads asyncssh, the remediation engine,
the remote-write or relay clients, bcrypt or the SSH batch tool, nor aiohttp's client side,
prometheus_client's HTTP servers or the YAML parser (no configuration file given)."""

from __future__ import annotations

import asyncio
import functools
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from agent.agent import Agent
from agent.config import ConfigSource

# Runs the command line's own path (argv -> config -> Agent) and, once the agent has started,
# prints the modules loaded and stops it.
STARTED_MODULES = textwrap.dedent("""
    import json, sys
    from agent import cli
    from agent.agent import Agent

    start = Agent._start

    async def started(self):
        await start(self)
        from pydantic import BaseModel

        def models(cls):
            for sub in cls.__subclasses__():
                yield sub
                yield from models(sub)

        built = {m.__qualname__ for m in models(BaseModel)
                 if m.__module__.startswith("agent.") and m.__pydantic_complete__}
        loaded = [name for name, module in sys.modules.items() if module is not None]
        import mimetypes
        print(json.dumps({"modules": sorted(loaded), "built": sorted(built),
                          "mime_tables": mimetypes._db is not None}), flush=True)
        self.request_stop()

    Agent._start = started
    sys.exit(cli.main(["--web.listen-address", "127.0.0.1:0", "--log.level", "warning"]))
""")

OPTIONAL = ("asyncssh", "bcrypt", "regex", "agent.ssh.worker", "agent.ssh.connections",
            "agent.ssh.exec_cmd", "agent.ssh.targets", "agent.remediation.engine",
            "agent.remediation.alertmanager", "agent.matching", "agent.remote_write.pusher",
            "agent.relay.server", "agent.relay.delivery", "agent.profiling.web",
            "agent.status_page",  # loaded on the first visit to the page
            # the dependencies' parts a server never uses (agent.deferred)
            "aiohttp.client", "aiohttp.connector", "prometheus_client.exposition",
            "frozenlist._frozenlist", "pickle", "logging.handlers",
            "aiohttp._websocket.reader_c", "aiohttp._websocket.mask",
            "importlib.metadata",  # pydantic plugin discovery, aiohttp.__version__
            "yaml")  # no configuration file


@functools.cache
def started_agent() -> dict[str, Any]:
    """What a default agent has loaded and built once started."""
    out = subprocess.run([sys.executable, "-c", STARTED_MODULES], capture_output=True,
                         text=True, timeout=60, check=True)
    started: dict[str, Any] = json.loads(out.stdout.splitlines()[-1])
    return started


def test_an_agent_on_its_defaults_loads_no_optional_part() -> None:
    loaded = set(started_agent()["modules"])
    assert "agent.scheduler" in loaded  # the agent did start
    eager = sorted(name for name in loaded
                   if any(name == part or name.startswith(part + ".") for part in OPTIONAL))
    assert not eager, f"loaded on the defaults: {eager}"


def test_the_systems_mime_tables_are_not_loaded_for_aiohttps_file_responses() -> None:
    """aiohttp makes a MimeTypes as it is imported, which would load /etc/mime.types into
    mimetypes' tables (~0.35 MB); the agent serves no file, and mimetypes' own functions
    still load them when first used."""
    assert started_agent()["mime_tables"] is False
    out = subprocess.run([sys.executable, "-c", "import agent, aiohttp.web, mimetypes; "
                          "print(mimetypes._db is None, mimetypes.guess_type('a.json')[0])"],
                         capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["True", "application/json"]


def test_only_the_root_configuration_model_builds_a_validator() -> None:
    """Each pydantic model class that is built keeps a core schema, a validator and a
    serializer (~10 kB to ~100 kB each); the root's validator holds every section's, so the
    others are built only when something uses them directly (defer_build)."""
    assert started_agent()["built"] == ["Config"]


async def test_the_first_rule_arrives_with_a_reload(tmp_path: Path) -> None:
    """Without rules there is no engine; a reload that brings one starts it."""
    path = tmp_path / "hostagent.yml"
    base = "web: {listen_address: '127.0.0.1:0'}\ncollectors: {cpu: {enabled: false}}\n"
    path.write_text(base)
    source = ConfigSource(path)
    agent = Agent(source.load(), source=source)
    task = asyncio.create_task(agent.run())
    try:
        await asyncio.wait_for(agent.started.wait(), 10)
        assert agent.remediation is None
        assert [f.name for f in agent.registry.snapshots["remediation"].families] == [
            "hostagent_remediation_condition", "hostagent_remediation_actions",
            "hostagent_remediation_episodes"]
        path.write_text(base + "remediation:\n  rules:\n"
                        "  - {name: never, condition: {metric: 'node_load1 > 1e12'},\n"
                        "     interval: 0.05, tiers: [{command: ['true']}]}\n")
        await agent.reload()
        deadline = time.monotonic() + 10
        while not agent.registry.snapshots["remediation"].families[0].samples:
            assert time.monotonic() < deadline, "the rule was never evaluated"
            await asyncio.sleep(0.02)
        assert agent.remediation is not None and "never" in agent.remediation.runners
        sample = agent.registry.snapshots["remediation"].families[0].samples[0]
        assert (sample.labels, sample.value) == ({"rule": "never"}, 0.0)
    finally:
        agent.request_stop()
        await task
