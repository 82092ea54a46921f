"""The agent's states and the only ways between them:

    STARTING -> RUNNING <-> RELOADING,  any of them -> STOPPING -> STOPPED

Start and reloads take turns under one lock, so two reloads never interleave and a reload
asked for during start runs after it. A stop is never queued: it switches to STOPPING at once
(STOPPING=1 goes out from the signal handler), and everything that would start work or say
READY=1 checks the state first, so nothing starts after STOPPING=1.

A reload is plan -> prepare (may await, may fail, touches nothing that runs) -> commit
(synchronous: no other task can run between its steps, so it is applied whole) -> retire
(await the end of the parts the commit replaced). A failure before the commit leaves the
whole running configuration as it was.

Long-lived tasks are watched: one that ends on its own, with or without an exception, is
logged with its traceback and named in /health, which reports the agent degraded.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import signal
import traceback
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from agent.logs import kv
from agent.systemd import Notifier

log = logging.getLogger("hostagent")


class State(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    RELOADING = "reloading"
    STOPPING = "stopping"
    STOPPED = "stopped"


class Stopping(Exception):
    """The agent is stopping: a start step or a reload is not carried out."""

    def __init__(self) -> None:
        super().__init__("the agent is stopping")


class Plan(Protocol):
    """A prepared change. commit() must not await; discard() undoes prepare's side effects."""

    def commit(self) -> None: ...

    def discard(self) -> None: ...

    async def retire(self) -> None: ...


class Lifecycle:
    def __init__(self, notifier: Notifier, status: Callable[[], str]) -> None:
        self.state = State.STARTING
        self._notifier = notifier
        self._status = status
        self._turn = asyncio.Lock()
        self.stop_requested = asyncio.Event()
        self._reloads: set[asyncio.Task[None]] = set()
        self._watched: set[asyncio.Task[Any]] = set()
        self.deaths: dict[str, str] = {}  # task name -> why it ended, for /health

    @property
    def stopping(self) -> bool:
        return self.state in (State.STOPPING, State.STOPPED)

    def check(self) -> None:
        """Raises Stopping once a stop was asked for: a start step calls it before each part
        it starts."""
        if self.stopping:
            raise Stopping

    # Signals

    def install_signals(self, on_reload: Callable[[], None]) -> None:
        """Before anything else can receive a signal: SIGHUP's default action kills."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        loop.add_signal_handler(signal.SIGINT, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, on_reload)

    @staticmethod
    def remove_signals() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)

    # Transitions

    def request_stop(self) -> None:
        if self.stopping:
            return
        self.state = State.STOPPING
        self._notifier.stopping()
        self.stop_requested.set()

    async def start(self, steps: Callable[[], Awaitable[None]]) -> None:
        """Runs the start steps holding the turn; RUNNING after, unless a stop came."""
        async with self._turn:
            await steps()
            self.check()
            self.state = State.RUNNING

    def announce_ready(self) -> bool:
        """READY=1 for the first start, only while running (a reload in flight sends its own
        when it ends; a stop means never)."""
        if self.state is not State.RUNNING:
            return False
        self._notifier.ready(self._status())
        return True

    async def reload(self, prepare: Callable[[], Awaitable[Plan]]) -> None:
        """One reload, after any start or reload before it. Raises what prepare raised (the
        running configuration stays), or Stopping."""
        self.check()
        task = asyncio.create_task(self._reload(prepare), name="reload")
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)
        # A requester that goes away (an HTTP client) does not cancel the reload itself.
        await asyncio.shield(task)

    async def _reload(self, prepare: Callable[[], Awaitable[Plan]]) -> None:
        async with self._turn:
            self.check()
            self.state = State.RELOADING
            self._notifier.reloading()
            try:
                plan = await prepare()
            except BaseException:
                self._reloaded()
                raise
            if self.state is not State.RELOADING:  # a stop arrived while preparing
                plan.discard()
                raise Stopping
            try:
                plan.commit()
            finally:
                self._reloaded()
            await plan.retire()

    def _reloaded(self) -> None:
        if self.state is State.RELOADING:
            self.state = State.RUNNING
            self._notifier.ready(self._status())

    async def stop(self) -> None:
        """Enters STOPPING (if no signal did) and ends any reload in flight, so nothing it
        prepared is committed and no READY=1 follows."""
        self.request_stop()
        for task in list(self._reloads):
            task.cancel()
        await asyncio.gather(*self._reloads, return_exceptions=True)

    def stopped(self) -> None:
        self.state = State.STOPPED

    # Tasks

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self.watch(task)
        return task

    def watch(self, task: asyncio.Task[Any]) -> None:
        """A task meant to run until stopped: its end, other than by cancellation, is logged
        with its traceback and makes the agent degraded."""
        self._watched.add(task)
        task.add_done_callback(self._ended)

    def recovered(self, name: str) -> None:
        """What ended under that name runs again (the SSH worker's process, started anew): no
        longer a reason to be degraded."""
        self.deaths.pop(name, None)

    def _ended(self, task: asyncio.Task[Any]) -> None:
        self._watched.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        name = task.get_name()
        if exc is None:
            if self.stopping:
                return
            reason = "returned"
            log.error("background task ended unexpectedly", extra=kv(task=name))
        else:
            reason = "".join(traceback.format_exception_only(exc)).strip()
            log.error("background task died", exc_info=exc, extra=kv(task=name))
        self.deaths[name] = reason
