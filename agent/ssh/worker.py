"""The SSH worker: one task per target running rounds of the due modules, publishing one
snapshot per target to the registry's targets (families only; the exposition encodes them).

A round never overlaps the previous one for the same target (the task runs them in turn and
skips ticks it missed); a failing target only ever replaces its own snapshot. Rounds in flight
are capped globally, connection set-ups more tightly (sshd drops bursts beyond MaxStartups).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client.metrics_core import Metric

from agent.exposition.compressed import CompressedFamilies
from agent.exposition.registry import TargetSnapshot
from agent.logs import kv
from agent.matching import OutputMatcher
from agent.pool import DaemonThreadPool
from agent.remediation.actions import Outcome
from agent.ssh import MODULES, probes
from agent.ssh.connections import (
    ConnectionPool,
    Connector,
    ConnectSettings,
    ProbeError,
    Session,
    close_connection,
)
from agent.ssh.remote_node import NodeFilters, RemoteNode
from agent.ssh.targets import Change, Target, TargetSource

if TYPE_CHECKING:
    import asyncssh

    from agent.config import SshConfig

log = logging.getLogger("hostagent.ssh")


@dataclass
class _State:
    target: Target
    task: asyncio.Task[None] | None = None
    up: bool = False
    login_error: ProbeError | None = None  # of the last round
    duration: float = 0.0
    checks: dict[str, probes.CheckResult] = field(default_factory=dict)
    # Compressed unless /metrics carries them (ssh.node_on_metrics): only /probe and a few
    # readers need them, and as objects they would be most of a target's memory.
    node: tuple[Metric, ...] | CompressedFamilies = ()
    node_error: ProbeError | None = None
    remote: RemoteNode = field(default_factory=RemoteNode)
    rounds: int = 0
    logged: str | None = None  # the failure reason last logged


def connect_settings(config: SshConfig) -> ConnectSettings:
    return ConnectSettings(
        known_hosts=None if config.insecure_ignore_host_keys else config.known_hosts,
        agent=config.agent, keepalive_interval=config.keepalive_interval,
        connect_timeout=config.connect_timeout, login_timeout=config.login_timeout)


# A stopped target: its task, cancelled, and its connection, to close once the task ended.
_Detached = tuple["asyncio.Task[None] | None", "asyncssh.SSHClientConnection | None"]


class Targets(Protocol):
    """Where the targets' snapshots go: the Registry, or in the worker process the Outbox
    that sends them to the agent (agent.ssh.child)."""

    def publish_target(self, target: TargetSnapshot) -> None: ...

    def remove_target(self, name: str) -> None: ...


def _handshakes(config: SshConfig) -> int:
    return min(config.max_handshakes, config.max_in_flight)


class SshWorker:
    """Runs on one event loop (in the agent, that of its worker process: agent.ssh.child).
    _states and _config are replaced whole, never changed in place."""

    def __init__(self, config: SshConfig, registry: Targets,
                 watch: Callable[[asyncio.Task[None]], None] = lambda task: None) -> None:
        self._config = config
        self._watch = watch  # sees every long-lived task the worker starts
        self._registry = registry
        # Told the targets whenever they change (the worker process sends them to the agent).
        self.on_targets: Callable[[list[Target]], None] = lambda targets: None
        self._source = TargetSource(config)
        self._in_flight = asyncio.Semaphore(config.max_in_flight)
        self._pool = self._new_pool(config)
        self._states: dict[str, _State] = {}
        # Given by the agent to its worker process (see Change.plain), else the defaults.
        self._node_filters: NodeFilters = getattr(config, "node_filters", None) \
            or NodeFilters.defaults()
        self._refresher: asyncio.Task[None] | None = None
        self._rounds = True
        self._sync_lock = asyncio.Lock()
        self._matcher = OutputMatcher()
        # One thread parses every target's node output: with 64 targets in flight, a thread
        # each would take turns holding the GIL against the event loop answering scrapes.
        self._parser = DaemonThreadPool(1, "ssh-parse")

    def _new_pool(self, config: SshConfig) -> ConnectionPool:
        connector = Connector(connect_settings(config), asyncio.Semaphore(_handshakes(config)))
        return ConnectionPool(connector, config.reuse_connections)

    # Lifecycle

    async def start(self, rounds: bool = True) -> None:
        """Reads the targets and starts their rounds (rounds=False: targets only, for
        run_once)."""
        self.launch(await self.prepare(self._config), rounds)

    def launch(self, change: Change, rounds: bool = True) -> None:
        """Starts with the targets prepare() read; synchronous."""
        self._warn_if_insecure()
        self._rounds = rounds
        self._source = change.source
        self._set_targets()
        self._refresher = asyncio.create_task(self._refresh_loop(), name="ssh-targets")
        self._watch(self._refresher)

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        await self._finish(self._detach(list(self._states)))
        await self._pool.close_all()
        self._matcher.close()
        self._parser.shutdown(wait=False, cancel_futures=True)

    async def apply(self, config: SshConfig) -> None:
        """A reload in one go: prepare, commit, retire."""
        await self.commit(await self.prepare(config))()

    async def prepare(self, config: SshConfig) -> Change:
        """Reads the targets of config (in a thread) without touching the running ones."""
        source = TargetSource(config)
        await asyncio.to_thread(source.refresh)
        return Change(config, source)

    def commit(self, change: Change) -> Callable[[], Coroutine[Any, Any, None]]:
        """Switches to the prepared config, synchronously: targets whose settings did not
        change keep their connection and task. Returns what retires the replaced parts."""
        old, config = self._config, change.config
        self._config = config
        if (config.max_in_flight, config.max_handshakes) != (old.max_in_flight,
                                                              old.max_handshakes):
            self._in_flight = asyncio.Semaphore(config.max_in_flight)
        pool = self._pool
        detached = []
        if (connect_settings(config), config.reuse_connections, _handshakes(config)) != (
                connect_settings(old), old.reuse_connections, _handshakes(old)):
            detached = self._detach(list(self._states))
            self._pool = self._new_pool(config)
            self._warn_if_insecure()
        self._source = change.source
        detached += self._set_targets()

        async def retire() -> None:
            await self._finish(detached)
            if pool is not self._pool:
                await pool.close_all()

        return retire

    def _warn_if_insecure(self) -> None:
        if self._config.insecure_ignore_host_keys:
            log.warning("ssh host keys are NOT verified (ssh.insecure_ignore_host_keys): "
                        "connections can be intercepted")

    # Targets

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self._config.file_sd_refresh_interval)
            try:
                await self._sync()
            except Exception:
                log.exception("ssh targets could not be refreshed")

    async def _sync(self) -> None:
        async with self._sync_lock:
            source = self._source
            await asyncio.to_thread(source.refresh)
            if source is not self._source:  # a reload replaced it meanwhile
                return
            await self._finish(self._set_targets())

    def _set_targets(self) -> list[_Detached]:
        """Makes the running targets those of the source: a changed or removed one stops
        (returned, to finish), a new one starts. Synchronous."""
        wanted = {target.name: target for target in self._source.targets}
        stale = self._detach([name for name, state in self._states.items()
                              if wanted.get(name) != state.target])
        states = dict(self._states)
        for name, target in wanted.items():
            if name not in states:
                state = states[name] = _State(target, remote=RemoteNode(self._node_filters))
                if self._rounds:
                    state.task = asyncio.create_task(self._target_loop(state),
                                                     name=f"ssh:{name}")
                    self._watch(state.task)
        self._states = states
        self.on_targets(self.targets())
        return stale

    def _detach(self, names: list[str]) -> list[_Detached]:
        """Stops targets at once (their tasks are cancelled, their series go); _finish awaits
        them."""
        states = dict(self._states)
        detached = []
        for name in names:
            state = states.pop(name)
            if state.task is not None:
                state.task.cancel()
            self._pool.forget(name)
            self._registry.remove_target(name)
            detached.append((state.task, self._pool.take(name)))
        self._states = states
        return detached

    @staticmethod
    async def _finish(detached: list[_Detached]) -> None:
        await asyncio.gather(*(task for task, _ in detached if task is not None),
                             return_exceptions=True)
        await asyncio.gather(*(close_connection(conn) for _, conn in detached))

    def targets(self) -> list[Target]:
        return [state.target for state in self._states.values()]

    def target(self, name: str) -> Target | None:
        state = self._states.get(name)
        return state.target if state is not None else None

    async def run_on(self, name: str, command: str, timeout: float) -> Outcome:
        start = time.monotonic()
        state = self._states.get(name)
        if state is None:
            return Outcome(None, b"", b"", 0.0, f"unknown SSH target {name}")
        try:
            async with self._pool.session(state.target) as session:
                done = await session.run(command, timeout)
        except ProbeError as exc:
            return Outcome(None, b"", b"", time.monotonic() - start, exc.reason)
        return Outcome(done.exit_status, done.stdout, done.stderr, time.monotonic() - start)

    def check_success(self, name: str, check: str) -> bool | None:
        state = self._states.get(name)
        result = state.checks.get(check) if state is not None else None
        return result.success if result is not None else None

    def facts(self, name: str) -> tuple[bool, dict[str, bool]] | None:
        """(up, each check's success) of the target's last round; None when unknown."""
        state = self._states.get(name)
        if state is None:
            return None
        return state.up, {check: result.success for check, result in state.checks.items()}

    def up_count(self) -> tuple[int, int]:
        return sum(state.up for state in self._states.values()), len(self._states)

    # Rounds

    def _modules(self) -> dict[str, float]:
        modules = self._config.modules
        return {name: settings.interval for name in MODULES
                if (settings := getattr(modules, name)).enabled}

    async def _target_loop(self, state: _State) -> None:
        loop = asyncio.get_running_loop()
        due_at: dict[str, float] = {}
        while True:
            modules = self._modules()
            now = loop.time()
            due_at = {name: due_at.get(name, now) for name in modules}
            due = {name for name, when in due_at.items() if when <= now}
            if due:
                try:
                    await self.run_round(state.target.name, due)
                except Exception:  # a bug must not end the target's rounds for good
                    log.exception("ssh round failed", extra=kv(target=state.target.name))
                now = loop.time()
                for name in due:
                    # Ticks missed while the round ran are skipped, never run late.
                    missed = math.floor((now - due_at[name]) / modules[name]) + 1
                    due_at[name] += missed * modules[name]
            await asyncio.sleep(max(0.0, min(due_at.values(), default=now + 60) - loop.time()))

    async def run_once(self) -> None:
        """One round of every enabled module on every target, at the configured concurrency."""
        await self._sync()
        modules = set(self._modules())
        await asyncio.gather(*(self.run_round(name, modules) for name in list(self._states)))

    async def run_round(self, name: str, modules: set[str]) -> None:
        state = self._states.get(name)
        if state is None:  # removed meanwhile
            return
        config = self._config
        async with self._in_flight:
            started = time.perf_counter()
            async with self._pool.session(state.target) as session:
                try:
                    await session.login()
                    if modules <= {"login"} and session.reused:
                        await session.run(probes.NOOP, config.command_timeout)
                except ProbeError as exc:
                    state.up, state.login_error = False, exc
                    state.checks = {c.name: probes.CheckResult(False, None, exc.reason, str(exc))
                                    for c in config.checks}
                    state.node, state.node_error = (), exc
                else:
                    state.up, state.login_error = True, None
                    await self._run_modules(state, session, modules, config)
                    if session.lost is not None:
                        state.up, state.login_error = False, session.lost
            state.duration = time.perf_counter() - started
        state.rounds += 1
        self._log(state)
        self._publish(state)

    async def _run_modules(self, state: _State, session: Session, modules: set[str],
                           config: SshConfig) -> None:
        if "node" in modules:
            try:
                state.node = await probes.run_node(
                    session, state.remote, config.command_timeout, self._parser,
                    compress=not config.node_on_metrics)
                state.node_error = None
            except ProbeError as exc:
                state.node, state.node_error = (), exc
        if "checks" in modules:
            state.checks = {check.name: await probes.run_check(
                session, check, config.command_timeout, self._matcher)
                for check in config.checks}

    def _failure(self, state: _State) -> tuple[str | None, str | None]:
        """(reason, message) the target reports: its login, else the node module, else the
        first failing check; (None, None) when all is well."""
        if state.login_error is not None:
            return state.login_error.reason, str(state.login_error)
        if state.node_error is not None and self._config.modules.node.enabled:
            return state.node_error.reason, str(state.node_error)
        for name, result in self._checks(state).items():
            if not result.success:
                return result.failure, f"check {name}: {result.error}"
        return None, None

    def _checks(self, state: _State) -> dict[str, probes.CheckResult]:
        if not self._config.modules.checks.enabled:
            return {}
        return {c.name: state.checks[c.name] for c in self._config.checks
                if c.name in state.checks}

    def _log(self, state: _State) -> None:
        """Logs when the target's failure reason changes, not every round."""
        reason, message = self._failure(state)
        if reason == state.logged:
            return
        state.logged = reason
        if reason is None:
            log.info("ssh target ok", extra=kv(target=state.target.name))
        else:
            log.warning("ssh target failing",
                        extra=kv(target=state.target.name, reason=reason, err=message))

    # Results

    def module_families(self, name: str) -> dict[str, list[Metric]] | None:
        """The target's latest families by module, without its labels; None before its
        first round."""
        state = self._states.get(name)
        if state is None or state.rounds == 0:
            return None
        return {module: group.unpack() if isinstance(group, CompressedFamilies) else list(group)
                for module, group in self._groups(state).items()}

    def _groups(self, state: _State) -> dict[str, tuple[Metric, ...] | CompressedFamilies]:
        name = state.target.name
        groups: dict[str, tuple[Metric, ...] | CompressedFamilies] = {
            "login": tuple(probes.login_families(
                state.up, state.duration, self._failure(state)[0], self._pool.is_open(name),
                self._pool.handshakes[name]))}
        if self._config.modules.checks.enabled:
            groups["checks"] = tuple(probes.check_families(self._checks(state)))
        if self._config.modules.node.enabled:
            groups["node"] = state.node
        return groups

    def enabled_modules(self) -> list[str]:
        return [name for name in MODULES if getattr(self._config.modules, name).enabled]

    def _publish(self, state: _State) -> None:
        name = state.target.name
        if state.rounds == 0 or self._states.get(name) is not state:
            return
        labels = (("target", name), *state.target.labels)
        self._registry.publish_target(TargetSnapshot(name, labels, self._groups(state)))
