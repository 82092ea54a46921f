"""An SSH target's node series kept compressed: every reader gets what the objects gave."""

from __future__ import annotations

import subprocess
from pathlib import Path

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from agent.exposition.compressed import CompressedFamilies
from agent.exposition.formats import OPENMETRICS, TEXT, Demand, encode
from agent.exposition.registry import Registry, TargetSnapshot
from agent.exposition.render import Renderer, RuntimeFamilies, render
from agent.pool import DaemonThreadPool
from agent.ssh import remote_node

BOTH = (TEXT, OPENMETRICS)


def node_families() -> list[Metric]:
    """This host's node series as the node module parses a remote host's command output."""
    sections = {name: Path("/proc", name).read_text() for name in remote_node.PROC_FILES}
    sections["df"] = subprocess.run(["df", "-P"], capture_output=True, text=True).stdout
    sections["df -i"] = subprocess.run(["df", "-P", "-i"], capture_output=True,
                                       text=True).stdout
    return remote_node.RemoteNode().families(sections)


def snapshot(node: tuple[Metric, ...] | CompressedFamilies) -> TargetSnapshot:
    up = GaugeMetricFamily("hostagent_ssh_up", "Up.", value=1)
    return TargetSnapshot("db1:22", (("target", "db1:22"), ("role", "db")),
                          {"login": (up,), "node": node})


def test_unpacked_families_encode_byte_identical_and_are_fresh() -> None:
    families = node_families()
    assert len(families) > 20
    compressed = CompressedFamilies(families)
    for fmt in BOTH:
        assert encode(compressed.unpack(), fmt) == encode(families, fmt)
    assert compressed.unpack()[0] is not compressed.unpack()[0], "callers may change their copy"
    assert compressed.size * 3 < len(encode(families, TEXT)), "smaller than even one body"


async def test_probe_and_metrics_bodies_are_the_same_from_compressed_families() -> None:
    families = tuple(node_families())
    registry = Registry()
    pool = DaemonThreadPool(1)
    renderer = Renderer(registry, list, pool, Demand([TEXT]))
    try:
        bodies = {}
        for node in (families, CompressedFamilies(families)):
            registry.publish_target(snapshot(node))
            for fmt in BOTH:
                for module in (None, "node", "login"):
                    body = await renderer.target_body("db1:22", module, fmt)
                    assert body is not None
                    bodies.setdefault((fmt, module), []).append(body.plain)
                # /metrics, with the node series asked for (ssh.node_on_metrics) and not.
                for modules in (frozenset({"login"}), frozenset({"login", "node"})):
                    expo = render(1, {}, [], RuntimeFamilies(False), [fmt], registry.targets,
                                  modules)
                    bodies.setdefault((fmt, modules), []).append(expo.bodies[fmt].plain)
            # What remote write and self-healing conditions read.
            bodies.setdefault("all", []).append(
                encode(registry.targets["db1:22"].all_families(), TEXT))
        for key, (objects, compressed) in bodies.items():
            assert objects == compressed, key
        assert b"node_load1 " in bodies[(TEXT, None)][0]
        assert b"node_load1{" in bodies[(TEXT, frozenset({"login", "node"}))][0]
    finally:
        pool.shutdown(wait=False)
