"""The agent's side of the SSH worker process (agent.ssh.child says why it is a process): its
start, the messages both ways, and a view of the worker's state for /probe, /sd, the status
line and remediation. Imports neither asyncssh nor the worker.

What crosses, agent -> worker: a committed change (config and the targets read for it), a
remediation command, a ping (with the agent's log level), stop. Worker -> agent: snapshots in
batches (applied to the registry on the agent's loop, in order) with each target's facts and
the target list when it changed, replies, and the end of a worker task.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from agent.config import SshConfig
from agent.exposition.registry import Registry, TargetSnapshot
from agent.ssh import MODULES, wire
from agent.ssh.targets import Change, Target

log = logging.getLogger("hostagent.ssh")

COMMAND = (sys.executable, "-P", "-m", "agent.ssh.child")
START_SECONDS = 60.0  # for the child's imports (asyncssh, cryptography) on a busy host
STOP_SECONDS = 10.0  # for it to close its connections once asked to stop

Died = Callable[[str, str | None, str, str], None]  # task name, type, message, traceback


class WorkerView:
    """The worker's state as its process last reported it; answers what SshWorker answers
    (targets, target, enabled_modules, up_count, check_success). Outlives restarts."""

    def __init__(self, config: SshConfig) -> None:
        self.config = config  # the last committed
        self._targets: dict[str, Target] = {}
        self._facts: dict[str, tuple[bool, dict[str, bool]]] = {}
        # Of the last commit: a target list the process sent before it had that commit is
        # older than the commit's own list.
        self.generation = 0

    def commit(self, change: Change) -> int:
        """The change's config and targets, at once; returns its generation."""
        self.generation += 1
        self.config = change.config
        self._set_targets(change.source.targets)
        return self.generation

    def targets(self) -> list[Target]:
        return list(self._targets.values())

    def target(self, name: str) -> Target | None:
        return self._targets.get(name)

    def enabled_modules(self) -> list[str]:
        return [name for name in MODULES if getattr(self.config.modules, name).enabled]

    def up_count(self) -> tuple[int, int]:
        return sum(self._facts[name][0] for name in self._targets
                   if name in self._facts), len(self._targets)

    def check_success(self, name: str, check: str) -> bool | None:
        facts = self._facts.get(name)
        return facts[1].get(check) if facts is not None else None

    def apply(self, batch: list[tuple[str, TargetSnapshot | None, Any]],
              targets: list[Target] | None, generation: int) -> None:
        for name, snapshot, facts in batch:
            if snapshot is None or facts is None:
                self._facts.pop(name, None)
            else:
                self._facts[name] = facts
        if targets is not None and generation >= self.generation:
            self._set_targets(targets)

    def _set_targets(self, targets: list[Target]) -> None:
        self._targets = {target.name: target for target in targets}
        self._facts = {name: f for name, f in self._facts.items() if name in self._targets}

    def forget_results(self) -> None:
        """The worker process ended: no target is known up until the next one says so."""
        self._facts = {}


def _environment() -> dict[str, str]:
    """The agent's, with its import path (a zipapp's unpacked site included); without the
    systemd notification socket, which is the agent's alone."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("NOTIFY_SOCKET", "WATCHDOG_PID", "WATCHDOG_USEC")}
    env["PYTHONPATH"] = os.pathsep.join(path for path in sys.path if path)
    return env


def _log_settings() -> tuple[str, str]:
    """The agent's log level and format, for the child's own set-up."""
    root = logging.getLogger()
    formats = [getattr(handler, "fmt", None) for handler in root.handlers]
    fmt = next((f for f in formats if isinstance(f, str)), "logfmt")
    return logging.getLevelName(root.getEffectiveLevel()).lower(), fmt


class WorkerProcess:
    """One run of the worker process, from its start to its end (ended())."""

    def __init__(self, registry: Registry, view: WorkerView, died: Died,
                 command: tuple[str, ...] = COMMAND) -> None:
        self._registry = registry
        self.view = view
        self._died = died
        ours, theirs = socket.socketpair()
        level, fmt = _log_settings()
        # Started from the agent's loop thread, which lives as long as the agent: the
        # child's PR_SET_PDEATHSIG fires when the thread that started it ends.
        try:
            self.process = subprocess.Popen(
                [*command, str(theirs.fileno()), str(os.getpid()), level, fmt],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=_environment())
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._socket = ours
        self._writer: asyncio.StreamWriter | None = None
        self._calls: dict[int, asyncio.Future[Any]] = {}
        self._seq = itertools.count()
        self._reader: asyncio.Task[int] | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    async def started(self, timeout: float = START_SECONDS) -> None:
        """Waits for the child's hello; kills it and raises RuntimeError when none comes."""
        try:
            reader, self._writer = await asyncio.open_unix_connection(sock=self._socket)
            kind, _ = await asyncio.wait_for(wire.receive(reader), timeout)
            if kind != "hello":
                raise RuntimeError(f"unexpected first message {kind!r}")
        except Exception as exc:
            self._abandon()
            code = await asyncio.to_thread(self.process.wait)
            why = "no answer" if isinstance(exc, TimeoutError) else describe(code)
            raise RuntimeError(f"the SSH worker process did not start: {why}") from None
        except BaseException:  # cancelled (a stop or reload meanwhile): it goes all the same
            self._abandon()
            asyncio.get_running_loop().run_in_executor(None, self.process.wait)  # reaped
            raise
        self._reader = asyncio.create_task(self._read(reader), name="ssh-worker-reader")

    def _abandon(self) -> None:
        """Closes the socket and kills the process (not started, or no longer trusted)."""
        if self._writer is not None:
            self._writer.close()
        else:
            self._socket.close()
        self.kill()

    @property
    def connected(self) -> bool:
        """False once its socket ended (the process is exiting, or has)."""
        return self._writer is not None and not self._writer.is_closing()

    async def _read(self, reader: asyncio.StreamReader) -> int:
        try:
            while True:
                try:
                    self._handle(await wire.receive(reader))
                except EOFError:
                    break
                except Exception as exc:  # what it sent cannot be read or applied
                    log.error("the SSH worker process sent what the agent cannot apply; "
                              "killing it", extra={"kv": {"err": type(exc).__name__}})
                    self.kill()
                    break
        finally:
            for future in self._calls.values():
                if not future.done():
                    future.set_exception(ConnectionError("the SSH worker process ended"))
            self._calls.clear()
            if self._writer is not None:
                self._writer.close()
        # Its socket closes when it exits: this wait is short (unless it hangs in its exit).
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.to_thread(
                self.process.wait)), STOP_SECONDS)
        except TimeoutError:
            self.kill()
            return await asyncio.to_thread(self.process.wait)

    def _handle(self, message: Any) -> None:
        kind = message[0]
        if kind == "batch":
            _, batch, targets, generation = message
            self.view.apply(batch, targets, generation)
            self._registry.update_targets([(name, snapshot) for name, snapshot, _ in batch])
        elif kind == "reply":
            _, seq, ok, value = message
            future = self._calls.pop(seq, None)
            if future is not None and not future.done():
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(RuntimeError(value))
        elif kind == "died":
            self._died(*message[1:])

    async def ended(self) -> int:
        """The child's exit status (negative: the signal that ended it)."""
        assert self._reader is not None
        return await asyncio.shield(self._reader)

    def send(self, kind: str, *args: Any) -> asyncio.Future[Any]:
        """Sends a request; the future is its reply (ConnectionError if the child ends)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        # Not every reply is awaited (a change committed at start): an ended process's
        # ConnectionError is then no "exception never retrieved".
        future.add_done_callback(lambda done: done.cancelled() or done.exception())
        if self._writer is None or self._writer.is_closing():
            future.set_exception(ConnectionError("the SSH worker process ended"))
            return future
        seq = next(self._seq)
        self._calls[seq] = future
        self._writer.write(wire.pack((kind, seq, *args)))
        return future

    async def call(self, kind: str, *args: Any) -> Any:
        return await self.send(kind, *args)

    async def responsive(self, timeout: float) -> bool:
        """Whether it answers a ping within timeout."""
        try:
            await asyncio.wait_for(self.send("ping", _log_settings()[0]), timeout)
        except (TimeoutError, ConnectionError):
            return False
        return True

    async def stop(self) -> None:
        """Asks it to close its connections and exit; kills it after STOP_SECONDS."""
        with contextlib.suppress(TimeoutError, ConnectionError):
            await asyncio.wait_for(self.send("stop"), STOP_SECONDS)
        if self._reader is None:
            self.kill()
            await asyncio.to_thread(self.process.wait)
            return
        try:
            await asyncio.wait_for(self.ended(), STOP_SECONDS)
        except TimeoutError:
            self.kill()
            await self.ended()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGKILL)


def describe(code: int | None) -> str:
    """How a process ended, from its exit status."""
    if code is None:
        return "is running"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with status {code}"
