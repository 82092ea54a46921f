"""The SSH worker's process: `python -P -m agent.ssh.child FD PARENT_PID LEVEL FORMAT`, started
by the agent (agent.ssh.process) with FD one end of a socketpair.

asyncssh does its per-packet work (framing, cipher calls, one send() per packet) in the
process that owns the connection. In the agent's process, even on an event loop of its own,
that work held the interpreter lock against the threads answering scrapes: with 1,000 targets
/metrics p99 while rounds ran was 2.6-2.9x the SSH-off agent's. Here it shares only the CPUs.

The process dies with the agent (PR_SET_PDEATHSIG, and the end of its socket) and ignores
SIGINT and SIGTERM (a Ctrl-C in a terminal reaches the whole process group, systemd signals
the whole unit: the agent then stops it in order, its connections closed).
Its log lines go to the same stderr, in the agent's format and at its level.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import socket
import sys
import traceback
from collections.abc import Coroutine
from typing import Any

from agent import logs, memory, runloop
from agent.exposition.compressed import CompressedFamilies
from agent.exposition.registry import TargetSnapshot
from agent.remediation.actions import Outcome
from agent.ssh import quiet_asyncssh, tune_gc, wire
from agent.ssh.targets import Target
from agent.ssh.worker import SshWorker

log = logging.getLogger("hostagent.ssh")

PR_SET_PDEATHSIG = 1
# How long a finished round's snapshot may wait for others to cross with it. Each crossing
# makes the agent render /metrics again, with every target's series (~20 ms at 1,000
# targets, holding the interpreter lock against the scrapes): at 0.1 s, renders ran back to
# back while rounds ran and /metrics p99 was several times the SSH-off agent's. Removals and
# target lists cross at the end of the turn, and every reply flushes what waits, so a
# reload's reply comes after its changes.
BATCH_SECONDS = 1.0


def die_with_parent(parent: int) -> None:
    """SIGKILL when the agent ends, however it ends; exits at once if it ended already."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the end of the socket still ends it
        pass
    if os.getppid() != parent:
        os._exit(1)


class Outbox:
    """What goes to the agent: the worker's snapshots (it is the worker's Targets), in
    batches, each with the target's facts (up, check results) and, when it changed, the
    list of targets; replies; the end of a worker task."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self.worker: SshWorker | None = None
        self._pending: list[tuple[str, TargetSnapshot | None, Any]] = []
        self._targets: list[Target] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._soon = False
        self.generation = 0  # of the last change committed (see WorkerView.generation)

    def publish_target(self, target: TargetSnapshot) -> None:
        facts = self.worker.facts(target.name) if self.worker is not None else None
        self._pending.append((target.name, packed(target), facts))
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(BATCH_SECONDS, self.flush)

    def remove_target(self, name: str) -> None:
        self._pending.append((name, None, None))
        self._flush_soon()

    def targets_changed(self, targets: list[Target]) -> None:
        self._targets = targets
        self._flush_soon()

    def _flush_soon(self) -> None:
        if not self._soon:
            self._soon = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._soon = None, False
        if self._pending or self._targets is not None:
            batch, targets = self._pending, self._targets
            self._pending, self._targets = [], None
            self.send(("batch", batch, targets, self.generation))
            memory.maybe_trim()  # a minute after the last: what rounds freed goes back

    def send(self, message: Any) -> None:
        if not self._writer.is_closing():
            self._writer.write(wire.pack(message))

    def reply(self, seq: int, ok: bool, value: Any) -> None:
        self.flush()
        self.send(("reply", seq, ok, value))

    def watch(self, task: asyncio.Task[Any]) -> None:
        """A worker task's end other than by cancellation is the agent's to report."""
        task.add_done_callback(lambda done: None if done.cancelled() else self._died(done))

    def _died(self, task: asyncio.Task[Any]) -> None:
        exc = task.exception()
        self.flush()
        if exc is None:
            self.send(("died", task.get_name(), None, "", ""))
        else:
            self.send(("died", task.get_name(), type(exc).__name__, str(exc),
                       "".join(traceback.format_exception(exc))))


def packed(target: TargetSnapshot) -> TargetSnapshot:
    """The snapshot with every module's families compressed: in the agent one bytes object
    each instead of dozens of objects held for a whole interval, which its garbage collector
    would walk again and again (a young collection took 10-60 ms at 1,000 targets, during the
    rounds); its readers (the render, /probe, remote write) expand a snapshot once each."""
    modules = {module: group if isinstance(group, CompressedFamilies)
               else CompressedFamilies(group) for module, group in target.modules.items()}
    return TargetSnapshot(target.name, target.labels, modules, target.timestamp)


def set_level(level: str) -> None:
    logging.getLogger().setLevel(level.upper())
    logging.getLogger("asyncssh").setLevel(logging.NOTSET)
    quiet_asyncssh()


async def serve(sock: socket.socket) -> int:
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    outbox = Outbox(writer)
    worker: SshWorker | None = None
    replying: set[asyncio.Task[None]] = set()

    def answer(seq: int, coro: Coroutine[Any, Any, Any]) -> None:
        async def run() -> None:
            try:
                value = await coro
            except Exception as exc:
                outbox.reply(seq, False, f"{type(exc).__name__}: {exc}")
            else:
                outbox.reply(seq, True, value)

        task = asyncio.create_task(run())
        replying.add(task)
        task.add_done_callback(replying.discard)

    async def nothing() -> None:
        pass

    outbox.send(("hello", os.getpid()))
    while True:
        try:
            kind, seq, *args = await wire.receive(reader)
        except EOFError:  # the agent is gone
            return 1
        if kind == "ping":
            set_level(args[0])
            outbox.reply(seq, True, None)
        elif kind == "commit":
            change, outbox.generation = args
            if worker is None:
                worker = SshWorker(change.config, outbox, outbox.watch)
                worker.on_targets = outbox.targets_changed
                outbox.worker = worker
                worker.launch(change)
                answer(seq, nothing())
            else:
                answer(seq, worker.commit(change)())
        elif kind == "run_on":
            if worker is None:
                outbox.reply(seq, True, Outcome(None, b"", b"", 0.0,
                                                "the SSH worker is not running"))
            else:
                answer(seq, worker.run_on(*args))
        elif kind == "stop":
            if worker is not None:
                await worker.stop()
            outbox.reply(seq, True, None)
            await writer.drain()
            writer.close()
            return 0


def main(argv: list[str]) -> int:
    fd, parent, level, fmt = int(argv[0]), int(argv[1]), argv[2], argv[3]
    die_with_parent(parent)
    # The agent stops it in order (its connections closed) when it stops itself: a SIGINT
    # from a terminal or systemd's SIGTERM to the whole unit is for the agent.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    memory.tune()  # before the first thread (the log writer's), as the agent does
    logs.setup(level, fmt)
    set_level(level)
    tune_gc()
    return runloop.run(serve(socket.socket(fileno=fd)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
