"""One outbox per robot: a FIFO queue, the robot's rate limit, retries with backoff, and a
memory of what was delivered so Alertmanager's retries never post a message twice.

Messages are submitted under an idempotence key. A key delivered within the dedup window is
not sent again; a key still queued or retrying is joined, not queued twice; a key that failed
is queued afresh (Alertmanager retries because the relay answered 5xx).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from agent.logs import kv
from agent.relay.config import RateLimit, Retry
from agent.relay.metrics import RelayMetrics
from agent.relay.robots import Outcome, Redactor, Robot, Verdict, verdict_from_body

log = logging.getLogger("hostagent.relay")


@dataclass
class Job:
    key: str
    route: str
    body: dict[str, Any]
    done: asyncio.Future[bool]
    queued: float = field(default_factory=time.monotonic)


class RateLimiter:
    """At most `messages` sends in any `interval` seconds (a sliding window, as the robots
    count). Every attempt counts: the robot counts refused ones too."""

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self._sent: collections.deque[float] = collections.deque()

    def delay(self, now: float) -> float:
        while self._sent and now - self._sent[0] >= self.limit.interval:
            self._sent.popleft()
        if len(self._sent) < self.limit.messages:
            return 0.0
        return self._sent[len(self._sent) - self.limit.messages] + self.limit.interval - now

    def record(self, now: float) -> None:
        self._sent.append(now)


class Outbox:
    def __init__(self, robot: Robot, label: str, session: aiohttp.ClientSession,
                 limit: RateLimit, retry: Retry, timeout: float, dedup_window: float,
                 metrics: RelayMetrics, redact: Redactor) -> None:
        self.robot = robot
        self.label = label  # the first route that named this robot, for metrics and logs
        self._session = session
        self._limiter = RateLimiter(limit)
        self._retry = retry
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._dedup_window = dedup_window
        self._metrics = metrics
        self._redact = redact
        self._queue: asyncio.Queue[Job] = asyncio.Queue()
        self._pending: dict[str, Job] = {}
        self._delivered: dict[str, float] = {}  # key -> when, insertion-ordered
        self._task: asyncio.Task[None] | None = None
        self._depth = metrics.queue_depth.labels(label, robot.kind)

    def configure(self, limit: RateLimit, retry: Retry, timeout: float, dedup_window: float,
                  redact: Redactor) -> None:
        """A reload's settings; the queue, the sends counted and the delivered keys stay."""
        self._limiter.limit = limit
        self._retry = retry
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._dedup_window = dedup_window
        self._redact = redact

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"outbox:{self.label}:{self.robot.kind}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for job in self._pending.values():
            if not job.done.done():
                job.done.set_result(False)

    def delivered(self, key: str) -> bool:
        when = self._delivered.get(key)
        return when is not None and time.monotonic() - when < self._dedup_window

    def submit(self, key: str, route: str, body: dict[str, Any]) -> asyncio.Future[bool]:
        """A future that becomes True when the robot accepted the message, False when it
        failed. Already delivered: True at once; already in progress: the same future."""
        if self.delivered(key):
            done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            done.set_result(True)
            return done
        job = self._pending.get(key)
        if job is None:
            job = Job(key, route, body, asyncio.get_running_loop().create_future())
            self._pending[key] = job
            self._queue.put_nowait(job)
            self._depth.inc()
        return job.done

    async def _run(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                ok = await self._deliver(job)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug must not stop the outbox; the job counts failed
                log.error("delivery crashed", extra=kv(route=job.route, robot=self.robot.kind,
                                                       err=self._redact(repr(exc))))
                ok = False
            self._depth.dec()
            del self._pending[job.key]
            if ok:
                self._remember(job.key)
                self._metrics.latency.labels(job.route, self.robot.kind).observe(
                    time.monotonic() - job.queued)
            self._metrics.messages.labels(job.route, self.robot.kind,
                                          "delivered" if ok else "failed").inc()
            if not job.done.done():
                job.done.set_result(ok)

    def _remember(self, key: str) -> None:
        now = time.monotonic()
        self._delivered[key] = now
        while self._delivered:  # oldest first: drop what the window forgot
            oldest, when = next(iter(self._delivered.items()))
            if now - when < self._dedup_window:
                break
            del self._delivered[oldest]

    async def _deliver(self, job: Job) -> bool:
        deadline = None
        backoff = self._retry.initial
        attempt = 0
        while True:
            attempt += 1
            await self._respect_rate_limit(job.route)
            if deadline is None:  # the retry budget starts with the first attempt
                deadline = time.monotonic() + self._retry.deadline
            outcome = await self._attempt(job.body)
            # Noted when the answer is in, which is after the robot counted it: our window
            # then never opens before the robot's does.
            self._limiter.record(time.monotonic())
            self._metrics.attempts.labels(job.route, self.robot.kind,
                                          outcome.verdict.value).inc()
            if outcome.verdict is Verdict.OK:
                return True
            fields = kv(route=job.route, robot=self.robot.kind, attempt=attempt,
                        problem=self._redact(outcome.detail))
            if outcome.verdict is Verdict.REJECTED:
                log.error("robot rejected the message", extra=fields)
                return False
            if time.monotonic() + backoff > deadline:
                log.error("giving the message up after retries", extra=fields)
                return False
            log.warning("delivery failed, retrying", extra=kv(**fields["kv"], backoff=backoff))
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._retry.max)

    async def _respect_rate_limit(self, route: str) -> None:
        delay = self._limiter.delay(time.monotonic())
        if delay <= 0:
            return
        self._metrics.rate_limit_waits.labels(route, self.robot.kind).inc()
        self._metrics.rate_limit_wait_seconds.labels(route, self.robot.kind).inc(delay)
        while delay > 0:
            await asyncio.sleep(delay)
            delay = self._limiter.delay(time.monotonic())

    async def _attempt(self, body: dict[str, Any]) -> Outcome:
        try:
            async with self._session.post(self.robot.url(), json=body,
                                          timeout=self._timeout) as response:
                try:
                    answer = await response.json(content_type=None)
                except ValueError:
                    answer = None
                return verdict_from_body(response.status, answer, self.robot.transient)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            # Exception texts can hold the URL, and so the credential: class name and redacted
            # text only.
            return Outcome(Verdict.TRANSIENT, self._redact(f"{type(exc).__name__}: {exc}"))
