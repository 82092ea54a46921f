"""Collector status: the scheduler's figures as the exposition, /health and the status page
read them. A plain value type, so readers need not import the scheduler."""

from __future__ import annotations

from typing import NamedTuple


class CollectorStatus(NamedTuple):
    """A consistent copy of one collector's state, safe to hand to other threads. A named
    tuple: every render and chart point takes one per collector, and a frozen dataclass
    costs ten times as much to make (6 us each here, on the event loop)."""

    name: str
    interval: float
    timeout: float
    runs: int
    success: bool | None
    last_duration: float | None
    last_success_time: float | None
    last_error: str | None
    timeouts: int
    skipped: int

    @property
    def completed_once(self) -> bool:
        return self.success is not None

    def success_age(self, now: float) -> float | None:
        return None if self.last_success_time is None else max(0.0, now - self.last_success_time)

    def stale(self, now: float) -> bool:
        """No success within three intervals (or none yet, once the first run is over)."""
        age = self.success_age(now)
        if age is None:
            return self.completed_once
        return age > 3 * self.interval


def human_duration(seconds: float) -> str:
    """Three significant digits in a unit that fits: 148 µs, 2.35 ms, 12.4 s; sub-millisecond
    runs are the common case, and '0.000 s' says nothing."""
    if seconds < 0.0005:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 0.9995:
        return f"{seconds * 1e3:.3g} ms"
    if seconds < 100:
        return f"{seconds:.3g} s"
    return f"{seconds:.0f} s"
