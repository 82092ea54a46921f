"""The SSH worker's own event loop, in a thread of its own.

asyncssh does its per-packet work (framing, cipher calls, one send() per packet) on the loop
that owns the connection: with 64 targets in flight that was most of the agent's loop's time,
and /metrics, /-/ready and /probe waited their turn behind it. On a loop of its own the
worker shares only the GIL with the web server.

The agent's loop (home) alone mutates the registry and the lifecycle's records; the worker's
loop alone touches the worker's connections and tasks. What crosses: calls into the worker
(WorkerLoop.call/run), the targets' snapshots (Handoff, in batches) and the end of a watched
task (relay_watch).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from agent import runloop
from agent.exposition.registry import Registry, TargetSnapshot

P = ParamSpec("P")
T = TypeVar("T")

Watch = Callable[["asyncio.Task[Any]"], None]


class WorkerLoop:
    """An event loop running in a daemon thread from construction until close()."""

    def __init__(self, name: str) -> None:
        self.loop = runloop.new_loop()
        self._ended: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._ended.set_running_or_notify_cancel()  # a waiter that gives up cannot cancel it
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        error: BaseException | None = None
        try:
            loop.run_forever()
            # As asyncio.run does: what is left (asyncssh's closing tasks) ends here.
            rest = asyncio.all_tasks(loop)
            for task in rest:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*rest, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        except BaseException as exc:
            error = exc
        finally:
            loop.close()
        if error is None:
            self._ended.set_result(None)
        else:
            self._ended.set_exception(error)

    @property
    def alive(self) -> bool:
        """False once the loop is closed (its thread ended or ending)."""
        return not self._ended.done()

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs
             ) -> concurrent.futures.Future[T]:
        """Runs fn on the loop, whole: nothing else runs there until it returns."""
        async def step() -> T:
            return fn(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(step(), self.loop)

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Awaits coro run on the loop; cancelling the caller cancels it there."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    async def responsive(self, timeout: float) -> bool:
        """Whether the loop runs a step within timeout (not stuck, its thread not gone)."""
        if not self.alive:
            return False
        try:
            await asyncio.wait_for(self.run(asyncio.sleep(0)), timeout)
        except (TimeoutError, RuntimeError):  # RuntimeError: the loop closed meanwhile
            return False
        return True

    async def ended(self) -> None:
        """Returns (or raises what ended it) when the loop's thread ends."""
        await asyncio.wrap_future(self._ended)

    async def close(self) -> None:
        """Stops the loop (what still runs on it is cancelled) and awaits its thread."""
        with contextlib.suppress(RuntimeError):  # closed already
            self.loop.call_soon_threadsafe(self.loop.stop)
        await asyncio.gather(asyncio.wrap_future(self._ended), return_exceptions=True)
        self._thread.join()  # returning, if not gone already


# How long a finished round's snapshot may wait for others to cross with it. Each crossing
# wakes the agent's loop, whose thread then takes the GIL from the worker's: a crossing per
# round made the first round of 1,000 targets take ~1.5x as long. Removals cross at the end
# of the turn, so a stop or reload has them applied by the time it is done.
BATCH_SECONDS = 0.1


class Handoff:
    """The registry as the worker's loop sees it: its changes applied on the home loop in
    batches, in order (one wake-up of that loop and one copy of the targets per batch)."""

    def __init__(self, registry: Registry, home: asyncio.AbstractEventLoop) -> None:
        self._registry = registry
        self._home = home
        # The worker's loop's, like the timer.
        self._pending: list[tuple[str, TargetSnapshot | None]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._soon = False

    def publish_target(self, target: TargetSnapshot) -> None:
        self._pending.append((target.name, target))
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(BATCH_SECONDS, self._send)

    def remove_target(self, name: str) -> None:
        self._pending.append((name, None))
        if not self._soon:
            self._soon = True
            asyncio.get_running_loop().call_soon(self._send)

    def _send(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._soon = None, False
        if self._pending:
            batch, self._pending = self._pending, []
            self._home.call_soon_threadsafe(self._registry.update_targets, batch)


def relay_watch(watch: Watch, home: asyncio.AbstractEventLoop) -> Watch:
    """A watch for tasks of the worker's loop: a task's end other than by cancellation is
    replayed as a task of the home loop, of the same name and outcome, for `watch` (the
    lifecycle logs it and names it in /health)."""
    def replay(task: asyncio.Task[Any]) -> None:
        watch(home.create_task(_outcome(task), name=task.get_name()))

    def relay(task: asyncio.Task[Any]) -> None:
        task.add_done_callback(
            lambda done: None if done.cancelled() else home.call_soon_threadsafe(replay, done))

    return relay


async def _outcome(task: asyncio.Task[Any]) -> Any:
    return task.result()
