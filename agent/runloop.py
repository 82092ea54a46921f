"""Running the agent's top-level coroutines: on uvloop when it is installed."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


def run(coro: Coroutine[Any, Any, Any]) -> int:
    """Runs coro to completion in a new event loop; its result is the exit code."""
    try:
        import uvloop
    except ImportError:
        return int(asyncio.run(coro))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return int(runner.run(coro))


def new_loop() -> asyncio.AbstractEventLoop:
    """A new event loop, uvloop's when it is installed (for a loop run by hand, in a thread)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop
