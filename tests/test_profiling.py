"""The /debug/* endpoints on the real app, the sampler, and `hostagent profile`."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.agent import Agent
from agent.cli import main
from agent.config import Config
from agent.profiling.sampler import fold, folded, sample
from agent.profiling.tasks import await_chain
from tests.test_web import running, wait_ready

FOLDED_LINE = re.compile(r"^[^ ;]+(;[^;]+)* \d+$")


def config(**debug: Any) -> Config:
    return Config.model_validate({"web": {"listen_address": "127.0.0.1:0"},
                                  "scheduler": {"jitter": 0}, "debug": debug})


@contextlib.asynccontextmanager
async def agent_at(**debug: Any) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    async with running(Agent(config(**debug))) as base, aiohttp.ClientSession() as session:
        await wait_ready(session, base)
        yield base, session


def spin_until(deadline: float) -> None:
    while time.monotonic() < deadline:
        pass


@contextlib.contextmanager
def busy_thread(seconds: float) -> Iterator[None]:
    thread = threading.Thread(target=spin_until, args=(time.monotonic() + seconds,),
                              name="busy-worker", daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join()


def test_fold_is_root_first_module_and_function() -> None:
    def inner() -> str:
        return fold("main", sys._getframe())

    def outer() -> str:
        return inner()

    stack = outer().split(";")
    assert stack[0] == "main"
    assert stack[-2:] == [
        "tests.test_profiling:test_fold_is_root_first_module_and_function.<locals>.outer",
        "tests.test_profiling:test_fold_is_root_first_module_and_function.<locals>.inner"]


def test_sampler_counts_the_busy_thread_and_not_itself() -> None:
    with busy_thread(1.5):
        counts = sample(1, 100, threading.Event())
    stack, count = counts.most_common(1)[0]
    assert stack.startswith("busy-worker;") and stack.endswith("tests.test_profiling:spin_until")
    assert count >= 10  # of 100 ticks: how many land depends on the machine's load
    assert not any("agent.profiling.sampler:sample" in s for s in counts)
    assert all(FOLDED_LINE.match(line) for line in folded(counts).splitlines())


async def test_profile_endpoint_shows_the_busy_function_on_top() -> None:
    async with agent_at(enabled=True) as (base, session):
        with busy_thread(2.0):
            async with session.get(f"{base}/debug/profile?seconds=1&hz=100") as r:
                assert r.status == 200
                body = await r.text()
    lines = body.splitlines()
    assert lines and all(FOLDED_LINE.match(line) for line in lines), body
    counts = [int(line.rsplit(" ", 1)[1]) for line in lines]
    assert "tests.test_profiling:spin_until" in lines[0]
    # On top; how many of the 100 ticks land depends on the machine's load, not on us.
    assert counts[0] == max(counts) and counts[0] >= 10


async def test_second_concurrent_profile_is_409() -> None:
    async with agent_at(enabled=True) as (base, session):
        first = asyncio.create_task(session.get(f"{base}/debug/profile?seconds=2&hz=10"))
        await asyncio.sleep(0.5)  # the first is sampling by now
        async with session.get(f"{base}/debug/profile?seconds=1") as r:
            assert r.status == 409
            assert "already running" in await r.text()
        async with await first as r:
            assert r.status == 200
        async with session.get(f"{base}/debug/profile?seconds=1&hz=10") as r:
            assert r.status == 200, "free again once the first has finished"


@pytest.mark.parametrize(("query", "message"), [
    ("seconds=0", "seconds: must be between 1 and 60, got 0"),
    ("seconds=61", "seconds: must be between 1 and 60, got 61"),
    ("seconds=soon", "seconds: expected a number, got 'soon'"),
    ("seconds=nan", "seconds: must be between 1 and 60"),
    ("hz=0", "hz: must be between 1 and 1000, got 0"),
    ("hz=1001", "hz: must be between 1 and 1000, got 1001"),
    ("hz=", "hz: expected a number, got ''"),
])
async def test_profile_parameters_are_validated(query: str, message: str) -> None:
    async with agent_at(enabled=True) as (base, session):
        async with session.get(f"{base}/debug/profile?{query}") as r:
            assert r.status == 400
            assert (await r.text()).startswith(message)
        for bad, expected in (("0", "top: must be between 1 and 1000"),
                              ("1.5", "top: expected an integer")):
            async with session.get(f"{base}/debug/heap?top={bad}") as r:
                assert r.status == 400 and (await r.text()).startswith(expected)


async def test_task_dump_names_the_scheduler_tasks() -> None:
    agent = Agent(config(enabled=True))
    async with running(agent) as base, aiohttp.ClientSession() as session:
        await wait_ready(session, base)
        async with session.get(f"{base}/debug/tasks") as r:
            assert r.status == 200
            text = await r.text()
        intervals = {status.interval for status in agent.scheduler.statuses()}
    assert intervals
    for interval in intervals:
        assert f"Task 'collectors:every {interval:g}s' pending" in text
    assert "Task 'loop-lag' pending" in text
    assert "in Scheduler._loop" in text


async def test_await_chain_follows_awaits_to_the_innermost_coroutine() -> None:
    async def leaf() -> None:
        await asyncio.sleep(10)

    async def root() -> None:
        await leaf()

    task = asyncio.create_task(root())
    await asyncio.sleep(0)
    names = [frame.f_code.co_name for frame in await_chain(task.get_coro())]
    task.cancel()
    assert names == ["root", "leaf", "sleep"]


async def test_thread_dump_shows_every_thread() -> None:
    async with agent_at(enabled=True) as (base, session), \
            session.get(f"{base}/debug/threads") as r:
        assert r.status == 200
        text = await r.text()
    assert "Thread 'MainThread'" in text
    assert re.search(r"Thread 'collector-0' \(ident \d+, tid \d+\) daemon", text)
    assert "in DaemonThreadPool._work" in text


async def test_heap_needs_tracemalloc_then_reports_the_top_sites() -> None:
    assert not tracemalloc.is_tracing()
    async with agent_at(enabled=True) as (base, session):
        async with session.get(f"{base}/debug/heap") as r:
            assert r.status == 409
            text = await r.text()
        assert "debug.tracemalloc: true" in text and "POST /debug/heap/start" in text
        async with session.post(f"{base}/debug/heap/start") as r:
            assert r.status == 200
        garbage = [bytearray(1000) for _ in range(1000)]  # noqa: F841 (kept alive)
        async with session.get(f"{base}/debug/heap?top=3") as r:
            assert r.status == 200
            lines = (await r.text()).splitlines()
        assert len(lines) == 2 + 3
        assert "test_profiling.py:" in "\n".join(lines[2:])
    assert not tracemalloc.is_tracing(), "tracing started by the agent stops with it"


async def test_tracemalloc_from_config() -> None:
    async with agent_at(enabled=True, tracemalloc=True) as (base, session):
        assert tracemalloc.is_tracing()
        async with session.get(f"{base}/debug/heap?top=1") as r:
            assert r.status == 200
        async with session.post(f"{base}/debug/heap/stop") as r:
            assert r.status == 200
        async with session.get(f"{base}/debug/heap") as r:
            assert r.status == 409
    assert not tracemalloc.is_tracing()


async def test_debug_endpoints_are_404_when_off() -> None:
    async with agent_at() as (base, session):
        for path in ("/debug/profile?seconds=1", "/debug/tasks", "/debug/threads",
                     "/debug/heap"):
            async with session.get(f"{base}{path}") as r:
                assert r.status == 404, path
        async with session.post(f"{base}/debug/heap/start") as r:
            assert r.status == 404


async def test_profile_command_writes_the_folded_file(tmp_path: Path) -> None:
    out = tmp_path / "agent.folded"
    async with agent_at(enabled=True) as (base, _):
        with busy_thread(2.0):
            code = await asyncio.to_thread(
                main, ["profile", "--url", base, "--seconds", "1", "-o", str(out)])
    assert code == 0
    lines = out.read_text().splitlines()
    assert lines and all(FOLDED_LINE.match(line) for line in lines)
    assert "spin_until" in lines[0]


async def test_profile_command_errors(capsys: pytest.CaptureFixture[str]) -> None:
    async with agent_at() as (base, _):
        code = await asyncio.to_thread(main, ["profile", "--url", base, "--seconds", "1"])
    assert code == 1
    assert capsys.readouterr().err == (
        f"hostagent: debug endpoints are off on {base} (set debug.enabled: true)\n")

    async with agent_at(enabled=True) as (base, _):
        code = await asyncio.to_thread(main, ["profile", "--url", base, "--seconds", "99"])
    assert code == 1
    assert capsys.readouterr().err == (
        f"hostagent: {base}: HTTP 400: seconds: must be between 1 and 60, got 99\n")

    # The agent is gone: nothing listens on its port any more.
    assert main(["profile", "--url", base, "--seconds", "1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"hostagent: cannot fetch a profile from {base}: ")
    assert err.count("\n") == 1
