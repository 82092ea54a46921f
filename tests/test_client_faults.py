"""What any client can do to a reply (go away in the middle, read too slowly) is a debug-level
fact and a count, never a warning or a traceback in the log."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time

import aiohttp
import pytest

from agent.agent import Agent
from agent.scheduler import Job
from tests.test_web import Gated, config, running, small_send_buffers, wait_ready


def cut_offs(agent: Agent) -> dict[str, float]:
    family = next(f for f in agent.probes.requests.collect()
                  if f.name == "hostagent_http_responses_cut_off")
    return {s.labels["reason"]: s.value for s in family.samples if s.name.endswith("_total")}


async def wait_for(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def big_agent(**web: object) -> Agent:
    gated = Gated(series=20_000, pad=100)  # about 2.5 MB of text
    gated.release.set()
    return Agent(config(**web), jobs=[Job("big", gated, 60, 30)])


def request(address: str, path: str = "/metrics") -> socket.socket:
    host, port = address.rsplit(":", 1)
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect((host, int(port)))
    client.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return client


async def test_a_client_gone_mid_reply_is_counted_and_not_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    agent = big_agent()
    caplog.set_level(logging.DEBUG)
    async with running(agent) as base, aiohttp.ClientSession() as session:
        await wait_ready(session, base)
        async with session.get(f"{base}/metrics") as r:  # the text format is ready from now
            await r.read()
        small_send_buffers(agent)
        assert cut_offs(agent) == {"client_gone": 0, "write_timeout": 0}
        for _ in range(3):
            client = request(agent.addresses[0])
            # Off the loop: the agent under test runs on it.
            assert (await asyncio.to_thread(client.recv, 100)).startswith(b"HTTP/1.1 200")
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()  # a reset, in the middle of the body
        await wait_for(lambda: cut_offs(agent)["client_gone"] == 3)
        async with session.get(f"{base}/metrics") as r:
            assert r.status == 200
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not loud, [(r.name, r.getMessage()) for r in loud]
    assert not any(r.exc_info for r in caplog.records)


async def test_a_write_timeout_is_counted_at_debug_level(
        caplog: pytest.LogCaptureFixture) -> None:
    agent = big_agent(write_timeout=0.5)
    caplog.set_level(logging.DEBUG)
    async with running(agent) as base, aiohttp.ClientSession() as session:
        await wait_ready(session, base)
        async with session.get(f"{base}/metrics") as r:
            await r.read()
        small_send_buffers(agent)
        with request(agent.addresses[0]):
            await wait_for(lambda: cut_offs(agent)["write_timeout"] == 1)
    cut = [r for r in caplog.records if "too slow" in r.getMessage()]
    assert cut and all(r.levelno == logging.DEBUG for r in cut)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert cut_offs(agent)["client_gone"] == 0
