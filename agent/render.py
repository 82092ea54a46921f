"""Snapshots out: the whole exposition, rendered once per registry generation.

A scrape never collects; it picks cached bytes by format and encoding. Only formats some
client asked for are rendered; the first request for a new format waits for one render.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field

from agent.formats import CONTENT_TYPES, OPENMETRICS, OPENMETRICS_EOF, Demand, encode
from agent.registry import Registry, Snapshot
from agent.scheduler import CollectorStatus
from agent.selfmetrics import RuntimeFamilies, collector_families

# Fast compression: the agent's CPU matters more than a few percent of a small body.
GZIP_LEVEL = 1
COALESCE_SECONDS = 0.02


@dataclass(frozen=True)
class Body:
    content_type: str
    plain: bytes
    gzipped: bytes


@dataclass(frozen=True)
class Exposition:
    generation: int
    # True once every scheduled collector had completed a run when this was rendered.
    complete: bool
    bodies: Mapping[str, Body] = field(default_factory=dict)


# User-supplied metrics yield to built-in collectors when names clash.
YIELDING = frozenset({"textfile"})


def without_clashes(snapshots: Mapping[str, Snapshot]) -> tuple[list[Snapshot], dict[str, int]]:
    """Snapshots in exposition order, each family name exposed once: a family whose name an
    earlier snapshot already has is dropped (and counted), since duplicates break the format."""
    ordered, dropped = [], {}
    seen: set[str] = set()
    for name in sorted(snapshots, key=lambda n: (n in YIELDING, n)):
        snapshot = snapshots[name]
        clash = snapshot.family_names & seen
        if clash:
            snapshot = snapshot.without(frozenset(clash))
            dropped[name] = len(clash)
        seen |= snapshot.family_names
        ordered.append(snapshot)
    return ordered, dropped


def render(
    generation: int,
    snapshots: Mapping[str, Snapshot],
    statuses: Sequence[CollectorStatus],
    runtime: RuntimeFamilies,
    formats: Iterable[str],
) -> Exposition:
    ordered, dropped = without_clashes(snapshots)
    own = [*collector_families(statuses, dropped), *runtime.collect()]
    bodies = {}
    for fmt in formats:
        plain = b"".join([*(s.body(fmt) for s in ordered), encode(own, fmt)])
        if fmt == OPENMETRICS:
            plain += OPENMETRICS_EOF
        bodies[fmt] = Body(CONTENT_TYPES[fmt], plain, gzip.compress(plain, GZIP_LEVEL, mtime=0))
    complete = all(status.completed_once for status in statuses)
    return Exposition(generation, complete, bodies)


class Renderer:
    """Re-renders in its own thread whenever the registry changes; bursts coalesce."""

    def __init__(
        self,
        registry: Registry,
        statuses: Callable[[], Sequence[CollectorStatus]],
        executor: Executor,
        demand: Demand,
    ) -> None:
        self._registry = registry
        self._statuses = statuses
        self._executor = executor
        self._demand = demand
        self._runtime = RuntimeFamilies()
        self._lock = asyncio.Lock()
        self.current = self.render_now()

    def render_now(self) -> Exposition:
        return render(self._registry.generation, self._registry.snapshots, self._statuses(),
                      self._runtime, self._demand.formats)

    async def _render(self) -> None:
        # Inputs are captured on the loop so the render thread sees one consistent generation;
        # renders never overlap, so an older one cannot replace a newer one.
        async with self._lock:
            args = (self._registry.generation, self._registry.snapshots, self._statuses(),
                    self._runtime, self._demand.formats)
            loop = asyncio.get_running_loop()
            self.current = await loop.run_in_executor(self._executor, render, *args)

    async def run(self) -> None:
        while True:
            await self._registry.changed.wait()
            # Collectors due on the same tick finish within milliseconds of each other.
            await asyncio.sleep(COALESCE_SECONDS)
            self._registry.changed.clear()
            await self._render()

    async def body(self, fmt: str) -> Body:
        """The current body in a format, rendering it now if nobody asked for it before."""
        if fmt not in self.current.bodies:
            self._demand.add(fmt)
            await self._render()
        return self.current.bodies[fmt]
