"""The real aiohttp app on port 0: every endpoint and status code."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import select
import socket
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from agent.agent import Agent
from agent.config import Config
from agent.exposition.formats import OPENMETRICS, TEXT
from agent.listener import DrainingSite
from agent.scheduler import Job
from tests.test_render import PROMETHEUS_ACCEPT


class Gated:
    """Blocks its first collect until released: holds the agent in 'starting'."""

    def __init__(self, series: int = 1, pad: int = 0) -> None:
        self.release = threading.Event()
        self.series = series
        self.pad = "x" * pad

    def collect(self) -> list[Metric]:
        self.release.wait(10)
        family = GaugeMetricFamily("gated_value", "A gated value.", labels=["n"])
        for n in range(self.series):
            family.add_metric([f"series-{n:06d}{self.pad}"], n)
        return [family]


def config(**web: Any) -> Config:
    return Config.model_validate({"web": {"listen_address": "127.0.0.1:0", **web},
                                  "scheduler": {"jitter": 0}})


@contextlib.asynccontextmanager
async def running(agent: Agent) -> AsyncIterator[str]:
    task = asyncio.create_task(agent.run())
    await asyncio.wait_for(agent.started.wait(), 10)
    try:
        yield f"http://{agent.addresses[0]}"
    finally:
        agent.request_stop()
        assert await asyncio.wait_for(task, 15) == 0


async def wait_ready(session: aiohttp.ClientSession, base: str) -> None:
    for _ in range(200):
        async with session.get(f"{base}/-/ready") as response:
            if response.status == 200:
                return
        await asyncio.sleep(0.02)
    raise AssertionError("agent never became ready")


async def test_endpoints_with_real_collectors() -> None:
    async with running(Agent(config())) as base, aiohttp.ClientSession() as session:
        await wait_ready(session, base)
        async with session.get(f"{base}/metrics", headers={"Accept-Encoding": "identity"}) as r:
            assert r.status == 200
            assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
            assert "Accept-Encoding" in r.headers["Vary"]
            names = {f.name for f in text_string_to_metric_families(await r.text())}
        assert {"node_cpu_seconds", "node_memory_MemTotal_bytes",
                "hostagent_collector_success", "process_cpu_seconds"} <= names
        async with session.get(f"{base}/metrics", headers={"Accept": PROMETHEUS_ACCEPT}) as r:
            assert r.headers["Content-Type"].startswith("application/openmetrics-text")
            assert (await r.read()).endswith(b"# EOF\n")
        async with session.get(f"{base}/metrics", headers={"Accept-Encoding": "gzip"},
                               auto_decompress=False) as r:
            assert r.headers["Content-Encoding"] == "gzip"
            assert b"node_cpu_seconds_total" in gzip.decompress(await r.read())
        async with session.get(f"{base}/-/healthy") as r:
            assert r.status == 200
        async with session.head(f"{base}/-/healthy") as r:
            assert r.status == 200 and await r.read() == b""
        async with session.head(f"{base}/-/ready") as r:
            assert r.status == 200
        async with session.get(f"{base}/health") as r:
            assert r.status == 200
            body = await r.json()
        assert body["status"] == "ok"
        assert set(body["collectors"]) >= {"cpu", "meminfo"}
        cpu = body["collectors"]["cpu"]
        assert cpu["success"] is True and cpu["stale"] is False
        assert cpu["last_success_age_seconds"] >= 0 and cpu["last_duration_seconds"] > 0
        async with session.get(f"{base}/nope") as r:
            assert r.status == 404
        async with session.post(f"{base}/metrics") as r:
            assert r.status == 405
        async with session.delete(f"{base}/-/healthy") as r:
            assert r.status == 405


async def test_ready_only_after_every_collector_completed_once() -> None:
    gated = Gated()
    agent = Agent(config(), jobs=[Job("gated", gated, 60, 30)])
    async with running(agent) as base, aiohttp.ClientSession() as session:
        async with session.get(f"{base}/-/ready") as r:
            assert r.status == 503
        async with session.get(f"{base}/health") as r:
            assert r.status == 503 and (await r.json())["status"] == "starting"
        async with session.get(f"{base}/-/healthy") as r:
            assert r.status == 200, "liveness never depends on collectors"
        async with session.get(f"{base}/metrics") as r:
            assert r.status == 200 and "gated_value" not in await r.text()
        gated.release.set()
        await wait_ready(session, base)
        async with session.get(f"{base}/metrics") as r:
            assert "gated_value" in await r.text()


async def test_failing_collector_degrades_health_but_not_readiness() -> None:
    class Broken:
        def collect(self) -> list[Metric]:
            raise RuntimeError("no such file")

    agent = Agent(config(), jobs=[Job("broken", Broken(), 60, 1)])
    async with running(agent) as base, aiohttp.ClientSession() as session:
        await wait_ready(session, base)
        async with session.get(f"{base}/health") as r:
            body = await r.json()
        assert r.status == 200 and body["status"] == "degraded"
        assert body["collectors"]["broken"]["last_error"] == "RuntimeError: no such file"
        async with session.get(f"{base}/metrics") as r:
            text = await r.text()
        assert 'hostagent_collector_success{collector="broken"} 0' in text


async def test_max_requests_rejects_beyond_the_cap() -> None:
    # ~8 MB: more than the kernel's largest send buffer (4 MB here), so a reader that
    # stops reading keeps its response in flight.
    gated = Gated(series=30_000, pad=250)
    gated.release.set()
    agent = Agent(config(max_requests=1), jobs=[Job("big", gated, 60, 30)])
    async with running(agent) as base, aiohttp.ClientSession() as session:
        await wait_ready(session, base)
        async with session.get(f"{base}/metrics") as r:  # the text format is rendered from now on
            await r.read()
        host, port = agent.addresses[0].rsplit(":", 1)
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect((host, int(port)))
        stalled.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            status = 0
            for _ in range(100):  # until the stalled response occupies the only slot
                async with session.get(f"{base}/metrics") as r:
                    status = r.status
                    await r.read()
                if status == 503:
                    break
                await asyncio.sleep(0.02)
            assert status == 503
            async with session.get(f"{base}/-/healthy") as r:
                assert r.status == 200, "the cap applies to /metrics only"
        finally:
            stalled.close()
        for _ in range(100):
            async with session.get(f"{base}/metrics") as r:
                await r.read()
                if r.status == 200:
                    break
            await asyncio.sleep(0.02)
        assert r.status == 200, "the slot is freed when the stalled client goes away"


async def test_readiness_drops_when_stopping() -> None:
    agent = Agent(config())
    async with running(agent) as base, aiohttp.ClientSession() as session:
        await wait_ready(session, base)
        agent.health.stopping = True
        async with session.get(f"{base}/-/ready") as r:
            assert r.status == 503
        async with session.get(f"{base}/health") as r:
            assert json.loads(await r.text())["status"] == "stopping"


async def test_only_formats_that_were_asked_for_are_rendered() -> None:
    agent = Agent(config(), jobs=[Job("ok", Gated(), 0.2, 0.1)])
    agent.scheduler._states["ok"].job.collector.release.set()  # type: ignore[attr-defined]
    async with running(agent) as base, aiohttp.ClientSession() as session:
        await wait_ready(session, base)
        assert set(agent.renderer.current.bodies) == {OPENMETRICS}  # Prometheus's, up front
        async with session.get(f"{base}/metrics", headers={"Accept": PROMETHEUS_ACCEPT}) as r:
            assert r.status == 200 and (await r.read()).endswith(b"# EOF\n")
        generation = agent.renderer.current.generation
        for _ in range(100):
            await asyncio.sleep(0.05)
            if agent.renderer.current.generation > generation:
                break
        assert agent.renderer.current.generation > generation, "re-rendered on the next tick"
        assert set(agent.renderer.current.bodies) == {OPENMETRICS}
        async with session.get(f"{base}/metrics") as r:
            assert r.status == 200 and "gated_value" in await r.text()
        assert set(agent.renderer.current.bodies) == {OPENMETRICS, TEXT}


class Incompressible:
    """About 150 kB gzipped: under the old direct-write size, over what a stalled reader's
    socket buffers absorb once the agent's send buffer is held small."""

    def collect(self) -> list[Metric]:
        family = GaugeMetricFamily("noise_value", "Random labels.", labels=["n"])
        for n in range(3000):
            family.add_metric([os.urandom(32).hex()], n)
        return [family]


def small_send_buffers(agent: Agent) -> None:
    """Accepted connections inherit the listener's send buffer: a slow link's, not loopback's
    megabytes, so a reader that stops reading holds the response up."""
    assert agent.runner is not None
    for site in agent.runner.sites:
        server = site._server  # type: ignore[attr-defined]
        for sock in server.sockets:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)


async def test_write_timeout_aborts_a_stalled_reader_of_a_small_gzip_body() -> None:
    agent = Agent(config(max_requests=1, write_timeout=1.0),
                  jobs=[Job("noise", Incompressible(), 60, 30)])
    async with running(agent) as base, aiohttp.ClientSession() as session:
        await wait_ready(session, base)
        async with session.get(f"{base}/metrics", headers={"Accept-Encoding": "gzip"},
                               auto_decompress=False) as r:
            size = len(await r.read())
        assert 100_000 < size < 256 * 1024, size
        small_send_buffers(agent)
        host, port = agent.addresses[0].rsplit(":", 1)
        with socket.socket() as stalled:
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stalled.connect((host, int(port)))
            stalled.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n")
            statuses = []
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and statuses[-2:] != [503, 200]:
                async with session.get(f"{base}/metrics") as r:
                    await r.read()
                if not statuses or statuses[-1] != r.status:
                    statuses.append(r.status)
                await asyncio.sleep(0.02)
            # In flight while it stalls (counted by max_requests), then cut off.
            assert statuses[-2:] == [503, 200], statuses
            stalled.settimeout(10)
            received = b""
            with contextlib.suppress(ConnectionResetError):
                while chunk := stalled.recv(1 << 16):
                    received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert len(body) < size, "aborted, not flushed to the end"


async def test_a_cold_burst_of_prometheus_scrapes_gets_no_503() -> None:
    """Prometheus's format is rendered before /-/ready says 200, so scrapes arriving together
    right after do not wait for a first render and pile past web.max_requests."""
    agent = Agent(config(max_requests=5))
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with running(agent) as base, aiohttp.ClientSession(connector=connector) as session:
        await wait_ready(session, base)

        async def scrape() -> int:
            async with session.get(f"{base}/metrics", headers={
                    "Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"}) as response:
                await response.read()
                return response.status

        statuses = await asyncio.gather(*(scrape() for _ in range(30)))
    assert statuses == [200] * 30


async def test_a_burst_of_connections_is_queued_not_dropped() -> None:
    """200 scrapers connecting while the loop is busy all complete their handshake: the listen
    queue is as deep as the kernel allows, where aiohttp's default of 128 drops the rest's SYNs
    (they retry after a second, or their first request waits for a retransmission)."""
    burst = 200
    with open("/proc/sys/net/core/somaxconn") as file:
        if int(file.read()) <= burst:
            pytest.skip("net.core.somaxconn is too small to tell")
    async with running(Agent(config())) as base:
        host, port = base.removeprefix("http://").rsplit(":", 1)
        clients = [socket.socket() for _ in range(burst)]
        try:
            # No await from here on: the agent accepts nothing, the kernel queues them all.
            for client in clients:
                client.setblocking(False)
                client.connect_ex((host, int(port)))
            pending = list(clients)
            deadline = time.monotonic() + 3
            while pending and time.monotonic() < deadline:
                _, writable, _ = select.select([], pending, [], 0.1)
                pending = [c for c in pending if c not in writable]
            assert not pending, f"{len(pending)} of {burst} connections never completed"
            assert all(c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0 for c in clients)
        finally:
            for client in clients:
                client.close()


async def test_every_waiting_connection_is_accepted_at_once() -> None:
    """uvloop's own listener takes one connection per loop iteration, so under load the last
    of a burst of scrapers waited hundreds of iterations for its first reply."""
    agent = Agent(config())
    async with running(agent) as base:
        host, port = base.removeprefix("http://").rsplit(":", 1)
        assert agent.runner is not None
        (site,) = agent.runner.sites
        assert isinstance(site, DrainingSite)
        (listening,) = site._server.sockets  # type: ignore[union-attr]
        # No await from here on: the kernel completes the handshakes and queues them.
        clients = [socket.create_connection((host, int(port)), timeout=5) for _ in range(50)]
        try:
            site.accept(listening)
            with pytest.raises(BlockingIOError):  # nothing left in the queue
                listening.accept()
            for client in clients:  # and each one is served
                client.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            replies = await asyncio.gather(*(asyncio.to_thread(_read_all, c) for c in clients))
            assert all(r.startswith(b"HTTP/1.1 200") for r in replies)
        finally:
            for client in clients:
                client.close()


def _read_all(client: socket.socket) -> bytes:
    chunks = []
    while chunk := client.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)
