"""SSH fan-out: probes remote hosts and feeds the registry; `hostagent ssh exec` for batch runs.

The supervisor and two process-wide settings live here. asyncssh is imported when the worker
starts (ssh.enabled) or a batch command runs, never by an agent that has SSH off. The worker
runs on an event loop of its own (agent.ssh.loop says why).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from agent.config import SshConfig
from agent.exposition.registry import Registry

if TYPE_CHECKING:
    from agent.remediation.actions import Outcome
    from agent.ssh.loop import WorkerLoop
    from agent.ssh.worker import Change, SshWorker

log = logging.getLogger("hostagent.ssh")

# The probe modules: login (reachability and login), checks (named commands), node (node_*).
MODULES = ("login", "checks", "node")
# Every command makes thousands of short-lived objects, and each young collection that
# cascades into a full one walks every kept connection: collect young objects less often.
GC_YOUNG_THRESHOLD = 10_000


def quiet_asyncssh() -> None:
    """asyncssh logs every connection and channel at INFO; keep that for debug logging."""
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("asyncssh").setLevel(logging.WARNING)


def tune_gc() -> tuple[int, int, int]:
    """Raises the young-generation threshold to GC_YOUNG_THRESHOLD; returns the previous
    thresholds."""
    previous = gc.get_threshold()
    gc.set_threshold(max(previous[0], GC_YOUNG_THRESHOLD), *previous[1:])
    return previous


class SshSupervisor:
    """Starts, reconfigures and stops the worker as the configuration says. Methods run on the
    agent's loop; the worker's own runs on its loop (self._loop)."""

    def __init__(self, registry: Registry,
                 watch: Callable[[asyncio.Task[None]], None] = lambda task: None) -> None:
        self._registry = registry
        self._watch = watch
        self.worker: SshWorker | None = None
        self._loop: WorkerLoop | None = None  # the worker's
        self._ended: asyncio.Task[None] | None = None  # reports its loop's thread ending
        self._gc_threshold: tuple[int, int, int] | None = None

    async def apply(self, config: SshConfig) -> None:
        plan = await self.prepare(config)
        plan.commit()
        await plan.retire()

    async def prepare(self, config: SshConfig) -> SshPlan:
        """What config asks for, read (targets) but not started: the running worker, if any,
        goes on untouched until the plan is committed."""
        if not config.enabled:
            return SshPlan(self, None, None)
        if self.worker is None:
            from agent.ssh.loop import Handoff, relay_watch
            from agent.ssh.worker import SshWorker

            home = asyncio.get_running_loop()
            worker = SshWorker(config, Handoff(self._registry, home),
                               relay_watch(self._watch, home))
            return SshPlan(self, worker, await worker.prepare(config))
        return SshPlan(self, self.worker, await self.worker.prepare(config))

    async def stop(self) -> None:
        retire = self._detach()
        if retire is not None:
            await retire()

    def commit(self, worker: SshWorker | None, change: Change | None
               ) -> Callable[[], Awaitable[None]] | None:
        """Synchronous: switches to what prepare() made; returns what retires the rest. The
        worker applies the change on its loop, whole, right after; retiring awaits that."""
        if worker is None or change is None:
            return self._detach()
        if worker is self.worker:
            loop = self._loop
            assert loop is not None
            applied = loop.call(worker.commit, change)

            async def retire() -> None:
                await loop.run((await asyncio.wrap_future(applied))())

            return retire
        from agent.ssh.loop import WorkerLoop

        quiet_asyncssh()
        self._gc_threshold = tune_gc()
        self._loop = WorkerLoop("ssh")
        launched = self._loop.call(worker.launch, change)
        self._ended = asyncio.create_task(_watch_loop(self._loop, launched), name="ssh-loop")
        self._watch(self._ended)
        self.worker = worker
        return None

    def _detach(self) -> Callable[[], Awaitable[None]] | None:
        """Synchronous: no worker from now on; returns what stops the one there was (its
        connections closed on its loop, then the loop)."""
        worker, loop, ended = self.worker, self._loop, self._ended
        self.worker = self._loop = self._ended = None
        self._restore_gc()
        if worker is None or loop is None or ended is None:
            return None

        async def retire() -> None:
            ended.cancel()  # the thread's end is expected now
            try:
                if loop.alive:  # else its end was reported already (ended)
                    await loop.run(worker.stop())
            finally:
                await loop.close()

        return retire

    def _restore_gc(self) -> None:
        if self._gc_threshold is not None:
            gc.set_threshold(*self._gc_threshold)
            self._gc_threshold = None

    async def run_on(self, target: str, command: str, timeout: float) -> Outcome:
        """A remediation action on a target, over the worker's connection to it."""
        from agent.remediation.actions import Outcome

        if self.worker is None or self._loop is None:
            return Outcome(None, b"", b"", 0.0, "the SSH worker is not running")
        return await self._loop.run(self.worker.run_on(target, command, timeout))

    def check_success(self, target: str, check: str) -> bool | None:
        """The last result of a check on a target; None before the first or when unknown."""
        return self.worker.check_success(target, check) if self.worker is not None else None

    async def responsive(self, timeout: float) -> bool:
        """False while the worker's loop is stuck or its thread gone (for the watchdog)."""
        return self._loop is None or await self._loop.responsive(timeout)

    def status(self) -> tuple[int, int] | None:
        """(targets up, targets) while the worker runs."""
        return self.worker.up_count() if self.worker is not None else None


async def _watch_loop(loop: WorkerLoop, launched: concurrent.futures.Future[None]) -> None:
    """Ends when the worker's launch failed or its loop's thread ended (either is a death
    for the lifecycle, unless cancelled first by a stop)."""
    await asyncio.wrap_future(launched)
    await loop.ended()


class SshPlan:
    """A prepared SSH change (see agent.lifecycle): start a worker, reconfigure the running
    one, or stop it (worker None)."""

    def __init__(self, supervisor: SshSupervisor, worker: SshWorker | None,
                 change: Change | None) -> None:
        self._supervisor = supervisor
        self._worker = worker
        self._change = change
        self._retire: Callable[[], Awaitable[None]] | None = None

    def commit(self) -> None:
        self._retire = self._supervisor.commit(self._worker, self._change)

    def discard(self) -> None:
        """Nothing prepared runs or holds a connection yet."""

    async def retire(self) -> None:
        if self._retire is not None:
            await self._retire()
