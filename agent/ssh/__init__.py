"""SSH fan-out: probes remote hosts and feeds the registry; `hostagent ssh exec` for batch runs.

The supervisor and two process-wide settings live here. The worker runs in a process of its
own (agent.ssh.child says why), started by the supervisor: the agent's process never imports
asyncssh for it; `hostagent ssh exec` imports it in its own.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import gc
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.config import SshConfig
    from agent.exposition.registry import Registry
    from agent.remediation.actions import Outcome
    from agent.ssh.process import WorkerProcess, WorkerView
    from agent.ssh.targets import Change

log = logging.getLogger("hostagent.ssh")

# The probe modules: login (reachability and login), checks (named commands), node (node_*).
MODULES = ("login", "checks", "node")
# Every command makes thousands of short-lived objects, and each young collection that
# cascades into a full one walks every kept connection: collect young objects less often.
GC_YOUNG_THRESHOLD = 10_000
# A worker process that ended is started again after RESTART_SECONDS, doubled after each
# end that follows within a minute of its start, up to RESTART_MAX_SECONDS.
RESTART_SECONDS = 1.0
RESTART_MAX_SECONDS = 60.0
# It is pinged every PING_SECONDS (which also carries the agent's log level to it); one that
# does not answer within STUCK_SECONDS is killed, and so started again.
PING_SECONDS = 5.0
STUCK_SECONDS = 10.0
DEATH = "ssh-worker"  # the name its ends have in /health


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
    """Starts, reconfigures and stops the worker process as the configuration says, and starts
    it again when it ends on its own. Runs on the agent's loop. `worker` is the worker's state
    as its process reports it (agent.ssh.process.WorkerView), None while SSH is off."""

    def __init__(self, registry: Registry,
                 watch: Callable[[asyncio.Task[Any]], None] = lambda task: None,
                 recovered: Callable[[str], None] = lambda name: None) -> None:
        """watch: sees the ends of the worker's tasks and process (the lifecycle logs them
        and names them in /health); recovered: told when a new process replaced one that
        ended."""
        self._registry = registry
        self._watch = watch
        self._recovered = recovered
        self.worker: WorkerView | None = None
        self.command: tuple[str, ...] | None = None  # the child's argv head (tests: faults)
        self._process: WorkerProcess | None = None
        self._change: Change | None = None  # the last committed
        self._keeper: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()

    async def apply(self, config: SshConfig) -> None:
        plan = await self.prepare(config)
        plan.commit()
        await plan.retire()

    async def prepare(self, config: SshConfig) -> SshPlan:
        """What config asks for, read (targets) and, for a first start, the process started
        and answering; the running worker, if any, goes on untouched until the plan is
        committed."""
        if not config.enabled:
            return SshPlan(self, None, None)
        from agent.ssh.targets import Change, TargetSource

        source = TargetSource(config)
        await asyncio.to_thread(source.refresh)
        change = Change(config, source)
        if self.worker is not None:
            return SshPlan(self, change, None)
        from agent.ssh.process import WorkerView

        return SshPlan(self, change, await self._start(WorkerView(config)))

    async def _start(self, view: WorkerView) -> WorkerProcess:
        from agent.ssh.process import COMMAND, WorkerProcess

        process = WorkerProcess(self._registry, view, self._relay,
                                self.command or COMMAND)
        await process.started()
        return process

    async def stop(self) -> None:
        retire = self._detach()
        if retire is not None:
            await retire()

    def commit(self, change: Change | None, process: WorkerProcess | None
               ) -> Callable[[], Awaitable[None]] | None:
        """Synchronous: switches to what prepare() made; returns what awaits the worker
        having applied it (its replaced targets' connections closed)."""
        if change is None:
            return self._detach()
        self._change = change
        if self.worker is None:
            assert process is not None
            self.worker = process.view
            self._process = process
            self._keeper = asyncio.create_task(self._keep(process), name="ssh-supervisor")
            self._watch(self._keeper)
        generation = self.worker.commit(change)
        if self._process is None:  # being started again: it will get the change
            return None
        applied = self._process.send("commit", change.plain(), generation)

        async def retire() -> None:
            try:
                await applied
            except ConnectionError:
                pass  # ended meanwhile: the next process gets the change
            except RuntimeError as exc:
                log.error("ssh worker could not apply the change", extra={"kv": {"err": exc}})

        return retire

    def _detach(self) -> Callable[[], Awaitable[None]] | None:
        """Synchronous: no worker from now on; returns what stops the process there was
        (its connections closed, then its exit)."""
        keeper, process = self._keeper, self._process
        self.worker = self._process = self._keeper = self._change = None
        if keeper is None:
            return None
        keeper.cancel()
        self._recovered(DEATH)  # an end it was recovering from is no reason to be degraded

        async def retire() -> None:
            await asyncio.gather(keeper, return_exceptions=True)
            if process is not None:
                await process.stop()
            _drop_targets(self._registry)

        return retire

    def discard(self, process: WorkerProcess | None) -> None:
        """A plan not committed: its process, if it made one, ends."""
        if process is not None:
            task = asyncio.create_task(process.stop())
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def _keep(self, process: WorkerProcess) -> None:
        """Watches the process; when it ends (or stops answering and is killed), reports it
        as a death and starts another with the last committed change, after a backoff."""
        loop = asyncio.get_running_loop()
        delay = RESTART_SECONDS
        while True:
            started = loop.time()
            why = await self._until_ended(process)
            self._process = None
            view = process.view
            view.forget_results()
            _drop_targets(self._registry)
            self._report(RuntimeError(f"the SSH worker process {why}"), DEATH)
            if loop.time() - started > 60:
                delay = RESTART_SECONDS
            while True:
                await asyncio.sleep(delay)
                delay = min(delay * 2, RESTART_MAX_SECONDS)
                log.info("starting the SSH worker process again")
                try:
                    process = await self._start(view)
                except (OSError, RuntimeError) as exc:
                    log.error("the SSH worker process could not be started",
                              extra={"kv": {"err": exc}})
                    continue
                break
            assert self._change is not None
            process.send("commit", self._change.plain(), view.generation)
            self._process = process
            self._recovered(DEATH)
            log.info("ssh worker process started", extra={"kv": {"pid": process.pid}})

    @staticmethod
    async def _until_ended(process: WorkerProcess) -> str:
        from agent.ssh.process import describe

        ended = asyncio.ensure_future(process.ended())
        while not ended.done():
            await asyncio.wait({ended}, timeout=PING_SECONDS)
            # A ping fails at once when the socket ended: the process is exiting then, and
            # its end (with the reason) comes within STOP_SECONDS without a kill.
            if not ended.done() and process.connected \
                    and not await process.responsive(STUCK_SECONDS) and process.connected:
                process.kill()
                await ended
                return f"did not answer for {STUCK_SECONDS:g} s and was killed"
        return describe(ended.result())

    def _relay(self, name: str, kind: str | None, message: str, trace: str) -> None:
        """A worker task's end, replayed as a task of this loop for `watch`."""
        exc: BaseException
        if kind is None:
            exc = RuntimeError("returned")
        else:
            cls = getattr(builtins, kind, None)
            exc = RuntimeError(f"{kind}: {message}")
            if isinstance(cls, type) and issubclass(cls, Exception):
                with contextlib.suppress(Exception):  # not every one is made from a message
                    exc = cls(message)
            exc.__cause__ = RemoteTraceback(trace)
        self._report(exc, name)

    def _report(self, exc: BaseException, name: str) -> None:
        async def died() -> None:
            raise exc

        self._watch(asyncio.create_task(died(), name=name))

    async def run_on(self, target: str, command: str, timeout: float) -> Outcome:
        """A remediation action on a target, over the worker's connection to it."""
        from agent.remediation.actions import Outcome

        if self._process is None:
            return Outcome(None, b"", b"", 0.0, "the SSH worker is not running")
        try:
            outcome: Outcome = await self._process.call("run_on", target, command, timeout)
        except (ConnectionError, RuntimeError) as exc:
            return Outcome(None, b"", b"", 0.0, str(exc))
        return outcome

    def check_success(self, target: str, check: str) -> bool | None:
        """The last result of a check on a target; None before the first or when unknown."""
        return self.worker.check_success(target, check) if self.worker is not None else None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def status(self) -> tuple[int, int] | None:
        """(targets up, targets) while the worker runs."""
        return self.worker.up_count() if self.worker is not None else None


def _drop_targets(registry: Registry) -> None:
    """The targets' series go (a worker process that ended can no longer vouch for them)."""
    if registry.targets:
        registry.update_targets([(name, None) for name in registry.targets])


class RemoteTraceback(Exception):
    """The traceback of an exception raised in the worker process, as text."""

    def __init__(self, trace: str) -> None:
        super().__init__(trace)

    def __str__(self) -> str:
        return f"\n\"\"\"\n{self.args[0]}\"\"\""


class SshPlan:
    """A prepared SSH change (see agent.lifecycle): start a worker (with its process), reconfigure
    the running one, or stop it (change None)."""

    def __init__(self, supervisor: SshSupervisor, change: Change | None,
                 process: WorkerProcess | None) -> None:
        self._supervisor = supervisor
        self._change = change
        self._process = process
        self._retire: Callable[[], Awaitable[None]] | None = None

    def commit(self) -> None:
        self._retire = self._supervisor.commit(self._change, self._process)

    def discard(self) -> None:
        """Nothing prepared runs or holds a connection: a process started for it ends."""
        self._supervisor.discard(self._process)

    async def retire(self) -> None:
        if self._retire is not None:
            await self._retire()
