"""Snapshots out: the whole exposition, rendered once per registry generation.

A scrape never collects; it picks cached bytes by format and encoding. Only formats some
client asked for are rendered; the first request for a new format waits for one render.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client.metrics_core import Metric

from agent import memory
from agent.formats import CONTENT_TYPES, OPENMETRICS, OPENMETRICS_EOF, Demand, encode
from agent.logs import kv
from agent.registry import Registry, Snapshot
from agent.scheduler import CollectorStatus
from agent.selfmetrics import RuntimeFamilies, collector_families

log = logging.getLogger("hostagent.render")

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


class Piece(Protocol):
    def body(self, fmt: str) -> bytes: ...


@dataclass(frozen=True)
class Partial:
    """A snapshot's families except those written elsewhere (merged) or dropped."""

    snapshot: Snapshot
    left_out: frozenset[str]

    def body(self, fmt: str) -> bytes:
        return b"".join(self.snapshot.family_body(f.name, fmt) for f in self.snapshot.families
                        if f.name not in self.left_out)


@dataclass(frozen=True)
class Merged:
    """A family that several snapshots expose with the same type, help and unit (node_load1 from
    the load collector and from each SSH target): one header, then every snapshot's samples.
    Their series differ by label (`target`); the bytes are reused, nothing is re-encoded."""

    name: str
    sources: tuple[Snapshot, ...]

    def body(self, fmt: str) -> bytes:
        first, *rest = (source.family_body(self.name, fmt) for source in self.sources)
        return first + b"".join(_samples(body) for body in rest)


def _samples(body: bytes) -> bytes:
    """A family's bytes without its # HELP / # TYPE / # UNIT lines."""
    start = 0
    while body.startswith(b"# ", start):
        start = body.index(b"\n", start) + 1
    return body[start:]


def _signature(family: Metric) -> tuple[str, str, str]:
    return family.type, family.documentation, family.unit


_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum",
             "_created"), "summary": ("_count", "_sum", "_created"), "info": ("_info",),
             "gaugehistogram": ("_bucket", "_gcount", "_gsum")}


def exposed_names(family: Metric) -> set[str]:
    """Every name a family's lines can carry in either format: a gauge `x_total` next to a
    counter `x` (exposed as `x_total`) would otherwise slip past a check on family names."""
    return {family.name, *(family.name + suffix for suffix in _SUFFIXES.get(family.type, ()))}


def without_clashes(snapshots: Mapping[str, Snapshot]) -> tuple[list[Piece], dict[str, int]]:
    """The exposition's pieces in order, each family name exposed once, since duplicates break
    the format. A family several snapshots share is merged when type, help and unit agree;
    otherwise the later snapshot's is dropped (and counted), and the textfile's always is."""
    order = sorted(snapshots, key=lambda n: (n in YIELDING, n))
    sources: dict[str, list[Snapshot]] = {}  # family name -> snapshots, the first sets the type
    signatures: dict[str, tuple[str, str, str]] = {}
    taken: set[str] = set()  # every exposed name of the families kept so far
    left_out: dict[str, set[str]] = {}
    dropped: dict[str, int] = {}
    for name in order:
        snapshot = snapshots[name]
        clash = snapshot.family_names & sources.keys()
        for family in snapshot.families:
            names = exposed_names(family)
            if family.name not in clash and not names & taken:
                sources[family.name] = [snapshot]
                signatures[family.name] = _signature(family)
                taken |= names
                continue
            left_out.setdefault(name, set()).add(family.name)
            if (family.name not in clash or name in YIELDING
                    or _signature(family) != signatures[family.name]):
                dropped[name] = dropped.get(name, 0) + 1
            else:
                sources[family.name].append(snapshot)
    merged: dict[str, list[Merged]] = {}
    for family_name, shared in sources.items():
        if len(shared) > 1:
            merged.setdefault(shared[0].name, []).append(Merged(family_name, tuple(shared)))
            left_out.setdefault(shared[0].name, set()).add(family_name)
    pieces: list[Piece] = []
    for name in order:
        out = left_out.get(name)
        pieces.append(Partial(snapshots[name], frozenset(out)) if out else snapshots[name])
        pieces += merged.get(name, [])
    return pieces, dropped


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


def _render_then_trim(*args: Any) -> Exposition:
    """In the render thread: the render, then (now and then) freed heap back to the system."""
    exposition = render(*args)
    memory.maybe_trim()
    return exposition


class Renderer:
    """Re-renders in its own thread whenever the registry changes; bursts coalesce."""

    def __init__(
        self,
        registry: Registry,
        statuses: Callable[[], Sequence[CollectorStatus]],
        executor: Executor,
        demand: Demand,
        exporter_metrics: bool = True,
    ) -> None:
        """exporter_metrics: False leaves out the agent's process_* and python_* series
        (node_exporter's --web.disable-exporter-metrics)."""
        self._registry = registry
        self._statuses = statuses
        self._executor = executor
        self._demand = demand
        self._runtime = RuntimeFamilies(exporter_metrics)
        self._lock = asyncio.Lock()
        self.failing = False
        self.current = self.render_now()

    def render_now(self) -> Exposition:
        return render(self._registry.generation, self._registry.snapshots, self._statuses(),
                      self._runtime, self._demand.formats)

    async def _render(self, missing: str | None = None) -> None:
        # Inputs are captured on the loop so the render thread sees one consistent generation;
        # renders never overlap, so an older one cannot replace a newer one.
        async with self._lock:
            if missing is not None and missing in self.current.bodies:
                return  # rendered while this request waited: one render serves the burst
            args = (self._registry.generation, self._registry.snapshots, self._statuses(),
                    self._runtime, self._demand.formats)
            loop = asyncio.get_running_loop()
            self.current = await loop.run_in_executor(self._executor, _render_then_trim, *args)

    async def run(self) -> None:
        while True:
            await self._registry.changed.wait()
            # Collectors due on the same tick finish within milliseconds of each other.
            await asyncio.sleep(COALESCE_SECONDS)
            self._registry.changed.clear()
            try:
                await self._render()
            except Exception as exc:
                # Keep serving the last good exposition; /health and the watchdog see the
                # failure through `failing`, and the next change tries again.
                if not self.failing:
                    log.error("rendering the exposition failed", extra=kv(err=repr(exc)))
                self.failing = True
            else:
                self.failing = False

    async def body(self, fmt: str) -> Body:
        """The current body in a format, rendering it now if nobody asked for it before."""
        if fmt not in self.current.bodies:
            self._demand.add(fmt)
            await self._render(fmt)
        return self.current.bodies[fmt]
