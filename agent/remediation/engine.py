"""The rule runner: evaluate, hold for `for`, run tiers with verification, respect the
cooldown and the hourly limits, escalate, resolve. One task per rule; the configuration's
commands are the only commands it ever runs."""

from __future__ import annotations

import asyncio
import logging
import shlex
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable

from prometheus_client.metrics_core import Metric

from agent.matching import OutputMatcher
from agent.remediation import alertmanager
from agent.remediation.actions import Outcome, run_local
from agent.remediation.condition import parse_condition
from agent.remediation.counters import Counters
from agent.remediation.settings import RemediationConfig, Rule, Tier

log = logging.getLogger("hostagent.remediation")
HOUR = 3600.0

# How the engine reaches the rest of the agent (injected, so the engine imports no room of it).
Families = Callable[[str], Iterable[Metric]]  # target ("local" or an SSH target) -> families
SshRun = Callable[[str, str, float], Awaitable[Outcome]]  # target, command, timeout
SshCheck = Callable[[str, str], bool | None]  # target, check -> success (None: unknown)


def kv(**fields: object) -> dict[str, object]:
    return {"kv": fields}


class Limits:
    """Actions per hour per rule and per target (host), over a sliding hour."""

    def __init__(self) -> None:
        self._by_rule: dict[str, deque[float]] = {}
        self._by_host: dict[str, deque[float]] = {}

    def allow(self, rule: Rule, per_host: int, now: float) -> str | None:
        """None when an action may run (and records it); otherwise which limit is hit."""
        window = [self._by_rule.setdefault(rule.name, deque()),
                  self._by_host.setdefault(rule.target, deque())]
        for times in window:
            while times and times[0] <= now - HOUR:
                times.popleft()
        if len(window[0]) >= rule.max_actions_per_hour:
            return "rule"
        if len(window[1]) >= per_host:
            return "host"
        for times in window:
            times.append(now)
        return None


class RuleRunner:
    def __init__(self, rule: Rule, engine: Engine) -> None:
        self.rule = rule
        self._engine = engine
        self._metric = (parse_condition(rule.condition.metric)
                        if rule.condition.metric is not None else None)
        self._pending_since: float | None = None
        self._last_episode_end = -float("inf")
        self._escalated: dict[str, object] | None = None

    async def holds(self) -> bool:
        condition, engine = self.rule.condition, self._engine
        if self._metric is not None:
            return self._metric.holds(engine.families(self.rule.target))
        if condition.ssh_check is not None:
            return engine.ssh_check(self.rule.target, condition.ssh_check.check) is False
        assert condition.command is not None
        check = condition.command
        outcome = await run_local(check.argv, False, check.timeout, engine.config.output_limit)
        passed = outcome.error is None and outcome.exit_status == check.expect_status
        if passed and check.regex is not None:
            # A pattern that runs out of time counts as not matching: the check failed.
            passed = bool(await engine.matcher.matches(check.regex, outcome.stdout))
        return not passed

    async def run(self) -> None:
        while True:
            try:
                await self.step()
            except Exception:  # a surprise in one evaluation must not end the rule for good
                log.exception("remediation rule evaluation failed", extra=kv(
                    rule=self.rule.name))
                self._engine.counters.count_episode(self.rule.name, "error")
            await asyncio.sleep(self.rule.interval)

    async def step(self) -> None:
        """One evaluation, and an episode when the condition has held for `for`."""
        rule, now = self.rule, time.monotonic()
        holding = await self.holds()
        self._engine.counters.condition[rule.name] = 1.0 if holding else 0.0
        self._engine.publish()
        if not holding:
            self._pending_since = None
            await self._resolve()
            return
        if self._pending_since is None:
            self._pending_since = now
        if (now - self._pending_since < rule.for_ or self._escalated is not None
                or now - self._last_episode_end < rule.cooldown):
            return
        await self.episode()

    async def episode(self) -> None:
        rule, engine = self.rule, self._engine
        tried: list[str] = []
        try:
            for number, tier in enumerate(rule.tiers, start=1):
                for attempt in range(1, tier.attempts + 1):
                    if engine.config.dry_run:
                        engine.counters.count_action(rule.name, number, "dry_run")
                        log.warning("remediation dry run: would run", extra=kv(
                            rule=rule.name, tier=number, target=rule.target,
                            command=_shown(tier)))
                        engine.counters.count_episode(rule.name, "dry_run")
                        return
                    limit = engine.limits.allow(rule, engine.config.max_actions_per_hour,
                                                time.monotonic())
                    if limit is not None:
                        engine.counters.count_episode(rule.name, "limited")
                        await self._escalate(tried, f"the hourly limit per {limit} is reached")
                        return
                    outcome = await self._act(tier)
                    result = ("success" if outcome.ok else
                              "timeout" if outcome.error == "timeout" else "failure")
                    engine.counters.count_action(rule.name, number, result)
                    log.warning("remediation action", extra=kv(
                        rule=rule.name, tier=number, attempt=attempt, target=rule.target,
                        exit_status=outcome.exit_status, error=outcome.error,
                        duration=f"{outcome.duration:.3f}"))
                    tried.append(f"tier {number} attempt {attempt}: {_shown(tier)} -> "
                                 f"{outcome.error or f'exit {outcome.exit_status}'}"
                                 f"\n{outcome.tail()}")
                    if await self._cleared_within(tier.verify):
                        engine.counters.count_episode(rule.name, "recovered")
                        log.warning("remediation recovered", extra=kv(
                            rule=rule.name, tier=number, attempt=attempt))
                        return
            engine.counters.count_episode(rule.name, "escalated")
            await self._escalate(tried, "every tier failed")
        finally:
            self._last_episode_end = time.monotonic()
            engine.publish()

    async def _act(self, tier: Tier) -> Outcome:
        if self.rule.target == "local":
            return await run_local(tier.command, tier.shell, tier.timeout,
                                   self._engine.config.output_limit)
        command = tier.command if isinstance(tier.command, str) else shlex.join(tier.command)
        return await self._engine.ssh_run(self.rule.target, command, tier.timeout)

    async def _cleared_within(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        step = min(1.0, self.rule.interval, seconds / 4)
        while True:
            if not await self.holds():
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(step)

    async def _escalate(self, tried: list[str], why: str) -> None:
        rule = self.rule
        alert = alertmanager.alert(
            rule.name, rule.target, rule.labels,
            f"remediation of {rule.name} on {rule.target} failed: {why}",
            "\n\n".join(tried) or "no action ran")
        log.error("remediation escalated", extra=kv(rule=rule.name, reason=why))
        self._escalated = alert
        await alertmanager.post(self._engine.config.alertmanager_url, [alert])

    async def _resolve(self) -> None:
        if self._escalated is None:
            return
        resolved = {**self._escalated, "endsAt": alertmanager.now()}
        if await alertmanager.post(self._engine.config.alertmanager_url, [resolved]):
            log.warning("remediation condition cleared, escalation resolved",
                        extra=kv(rule=self.rule.name))
            self._escalated = None


def _shown(tier: Tier) -> str:
    """The program an action runs, not its arguments: those can carry credentials, and the
    configuration file holds them whole."""
    return "a shell command" if isinstance(tier.command, str) else tier.command[0]


async def _no_ssh(target: str, command: str, timeout: float) -> Outcome:
    return Outcome(None, b"", b"", 0.0, f"SSH target {target} is not running")


class Engine:
    """Owns one task per rule; apply() replaces the rules (prepare, then a synchronous
    commit), stop() ends every episode."""

    def __init__(self, families: Families, publish: Callable[[list[Metric]], None],
                 ssh_run: SshRun = _no_ssh,
                 ssh_check: SshCheck = lambda target, check: None,
                 watch: Callable[[asyncio.Task[None]], None] | None = None) -> None:
        self.families = families
        self._publish = publish
        self.ssh_run = ssh_run
        self.ssh_check = ssh_check
        # Sees each rule's task: an end other than by cancellation is a bug to report.
        self._watch = watch or (lambda task: task.add_done_callback(self._died))
        self.config = RemediationConfig()
        self.counters = Counters()
        self.limits = Limits()
        self.matcher = OutputMatcher(name="remediation-regex")
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.runners: dict[str, RuleRunner] = {}

    def publish(self) -> None:
        self._publish(self.counters.families())

    async def apply(self, config: RemediationConfig) -> None:
        """Rules that changed or went away stop (a running action is killed); the rest go on."""
        plan = self.prepare(config)
        plan.commit()
        await plan.retire()

    def prepare(self, config: RemediationConfig) -> RemediationPlan:
        """The runners of new and changed rules (their conditions parsed), not started."""
        wanted = {rule.name: rule for rule in config.rules} if config.enabled else {}
        fresh = {name: RuleRunner(rule, self) for name, rule in wanted.items()
                 if name not in self.runners or self.runners[name].rule != rule}
        return RemediationPlan(self, config, set(wanted), fresh)

    def commit(self, config: RemediationConfig, wanted: set[str],
               fresh: dict[str, RuleRunner]) -> list[asyncio.Task[None]]:
        """Synchronous: stops the rules that changed or went away (returned, to await) and
        starts the prepared runners."""
        self.config = config
        stopped = [self._detach(name) for name in list(self._tasks)
                   if name not in wanted or name in fresh]
        for name, runner in fresh.items():
            self.runners[name] = runner
            self._tasks[name] = asyncio.create_task(runner.run(), name=f"remediation:{name}")
            self._watch(self._tasks[name])
        for name in list(self.counters.condition):
            if name not in wanted:
                del self.counters.condition[name]
        self.publish()
        return stopped

    def _died(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("remediation rule stopped unexpectedly",
                      exc_info=task.exception(), extra=kv(task=task.get_name()))

    def _detach(self, name: str) -> asyncio.Task[None]:
        task = self._tasks.pop(name)
        self.runners.pop(name, None)
        task.cancel()
        return task

    async def stop(self) -> None:
        await _finish([self._detach(name) for name in list(self._tasks)])
        self.matcher.close()


async def _finish(tasks: list[asyncio.Task[None]]) -> None:
    await asyncio.gather(*tasks, return_exceptions=True)


class RemediationPlan:
    """A prepared change of the rules (see agent.lifecycle)."""

    def __init__(self, engine: Engine, config: RemediationConfig, wanted: set[str],
                 fresh: dict[str, RuleRunner]) -> None:
        self._engine = engine
        self._config = config
        self._wanted = wanted
        self._fresh = fresh
        self._stopped: list[asyncio.Task[None]] = []

    def commit(self) -> None:
        self._stopped = self._engine.commit(self._config, self._wanted, self._fresh)

    def discard(self) -> None:
        """The prepared runners never started."""

    async def retire(self) -> None:
        await _finish(self._stopped)
