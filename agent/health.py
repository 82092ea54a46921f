"""Liveness, readiness and per-collector health, derived from scheduler state only."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from agent import __version__
from agent.exposition.render import Exposition
from agent.exposition.status import CollectorStatus

Phase = Literal["starting", "running", "stopping"]


class Health:
    def __init__(
        self,
        statuses: Callable[[], Sequence[CollectorStatus]],
        exposition: Callable[[], Exposition],
    ) -> None:
        self._statuses = statuses
        self._exposition = exposition
        self.started = time.time()
        self.stopping = False
        self._was_ready = False
        # Remote write queues: (degraded, report per queue), when push is configured.
        self.remote_write: Callable[[], tuple[bool, dict[str, Any]]] | None = None
        # Background tasks that ended on their own: name -> why (the lifecycle's record).
        self.deaths: Mapping[str, str] = {}

    def ready(self) -> bool:
        """Ready once the served exposition holds every collector's first run, until stopping.
        Latched: a collector added by a reload does not take a serving agent out of rotation."""
        if not self._was_ready:
            self._was_ready = self._exposition().complete
        return self._was_ready and not self.stopping

    def phase(self) -> Phase:
        if self.stopping:
            return "stopping"
        return "running" if self.ready() else "starting"

    def report(self) -> tuple[int, dict[str, Any]]:
        now = time.time()
        collectors = {}
        degraded = False
        for status in self._statuses():
            stale = status.stale(now)
            degraded |= status.success is False or stale
            age = status.success_age(now)
            collectors[status.name] = {
                "success": status.success,
                "interval_seconds": status.interval,
                "timeout_seconds": status.timeout,
                "last_duration_seconds": status.last_duration,
                "last_success_age_seconds": None if age is None else round(age, 3),
                "last_error": status.last_error,
                "stale": stale,
                "runs": status.runs,
                "timeouts": status.timeouts,
                "skipped": status.skipped,
            }
        queues = None
        if self.remote_write is not None:
            failing, queues = self.remote_write()
            degraded |= failing
        deaths = dict(self.deaths)
        degraded |= bool(deaths)
        phase = self.phase()
        overall = phase if phase != "running" else ("degraded" if degraded else "ok")
        body = {
            "status": overall,
            "version": __version__,
            "uptime_seconds": round(now - self.started, 3),
            "collectors": collectors,
        }
        if queues is not None:
            body["remote_write"] = queues
        if deaths:
            body["failed_tasks"] = deaths
        return (503 if phase != "running" else 200), body
