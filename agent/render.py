"""Snapshots out: the whole exposition, rendered once per registry generation.

A scrape never renders anything; it picks cached bytes by format and encoding.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

from agent.registry import OPENMETRICS_EOF, Registry, Snapshot, encode
from agent.scheduler import CollectorStatus
from agent.selfmetrics import RuntimeFamilies, collector_families

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
GZIP_LEVEL = 6
COALESCE_SECONDS = 0.02


@dataclass(frozen=True)
class Body:
    content_type: str
    plain: bytes
    gzipped: bytes


@dataclass(frozen=True)
class Exposition:
    generation: int
    text: Body
    openmetrics: Body
    # True once every scheduled collector had completed a run when this was rendered.
    complete: bool


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
) -> Exposition:
    ordered, dropped = without_clashes(snapshots)
    own_text, own_om = encode([*collector_families(statuses, dropped), *runtime.collect()])
    text = b"".join([*(s.text for s in ordered), own_text])
    om = b"".join([*(s.openmetrics for s in ordered), own_om, OPENMETRICS_EOF])
    return Exposition(
        generation,
        Body(TEXT_CONTENT_TYPE, text, gzip.compress(text, GZIP_LEVEL, mtime=0)),
        Body(OPENMETRICS_CONTENT_TYPE, om, gzip.compress(om, GZIP_LEVEL, mtime=0)),
        complete=all(status.completed_once for status in statuses),
    )


class Renderer:
    """Re-renders in its own thread whenever the registry changes; bursts coalesce."""

    def __init__(
        self,
        registry: Registry,
        statuses: Callable[[], Sequence[CollectorStatus]],
        executor: Executor,
    ) -> None:
        self._registry = registry
        self._statuses = statuses
        self._executor = executor
        self._runtime = RuntimeFamilies()
        self.current = self.render_now()

    def render_now(self) -> Exposition:
        return render(self._registry.generation, self._registry.snapshots, self._statuses(),
                      self._runtime)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._registry.changed.wait()
            # Collectors due on the same tick finish within milliseconds of each other.
            await asyncio.sleep(COALESCE_SECONDS)
            self._registry.changed.clear()
            # Capture inputs on the loop so the render thread sees one consistent generation.
            args = (self._registry.generation, self._registry.snapshots, self._statuses(),
                    self._runtime)
            self.current = await loop.run_in_executor(self._executor, render, *args)
