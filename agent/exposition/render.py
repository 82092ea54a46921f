"""Families out: the whole exposition, rendered once per registry generation, in a thread.

A scrape never collects and never encodes; it picks cached bytes by format and encoding.
Only formats some client asked for are rendered; the first request for a new format waits for
one render. Each source's families are encoded again only when their content changed. Small
bodies are gzipped with the render; a large one (SSH targets on /metrics) when a client first
asks for it, once per generation, so a round of one target does not re-compress every other.
SSH targets' series are served per target (/probe), and on /metrics only for the modules
`target_modules` names, with the `target` label.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gzip
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field

from prometheus_client.metrics_core import Metric

from agent import memory
from agent.exposition import policy
from agent.exposition.encoding import Encoded, FamilyEncoder, labelled
from agent.exposition.formats import CONTENT_TYPES, OPENMETRICS, OPENMETRICS_EOF, Demand, encode
from agent.exposition.registry import Registry, Snapshot, TargetSnapshot
from agent.exposition.selfmetrics import CollectorFamilies, RuntimeFamilies
from agent.exposition.status import CollectorStatus

log = logging.getLogger("hostagent.render")

# Fast compression: the agent's CPU matters more than a few percent of a small body.
GZIP_LEVEL = 1
# Bodies up to this size are gzipped as they are rendered, so every scrape is a lookup.
EAGER_GZIP_BYTES = 512 * 1024
COALESCE_SECONDS = 0.02
# After a render that took t seconds the next waits RENDER_PACE * t (at most MAX_PACE_SECONDS):
# a long render (a thousand SSH targets' series) holds the GIL, and back to back they would
# starve the event loop answering scrapes while the targets' rounds complete one by one.
RENDER_PACE = 3.0
MAX_PACE_SECONDS = 1.0
OWN = "hostagent"  # the agent's own families, as a source of the clash check
TARGET_PREFIX = "ssh:"


def gzip_bytes(plain: bytes) -> bytes:
    return gzip.compress(plain, GZIP_LEVEL, mtime=0)


class Body:
    """One format's bytes; the gzipped form made once, on first need."""

    __slots__ = ("_gzipped", "_lock", "content_type", "plain")

    def __init__(self, content_type: str, plain: bytes, eager_gzip: bool = False,
                 gzipped: bytes | None = None) -> None:
        """gzipped: the body's gzip when already made."""
        self.content_type = content_type
        self.plain = plain
        self._gzipped = gzipped
        self._lock = threading.Lock()
        if eager_gzip:
            self.gzip()

    @property
    def gzipped_ready(self) -> bytes | None:
        return self._gzipped

    def gzip(self) -> bytes:
        """Blocking; concurrent callers share one compression."""
        with self._lock:
            if self._gzipped is None:
                self._gzipped = gzip_bytes(self.plain)
            return self._gzipped

    @property
    def gzipped(self) -> bytes:
        return self.gzip()


@dataclass(frozen=True)
class Exposition:
    generation: int
    # True once every scheduled collector had completed a run when this was rendered.
    complete: bool
    bodies: Mapping[str, Body] = field(default_factory=dict)
    dropped: Mapping[str, int] = field(default_factory=dict)


class Cache:
    """Encoders by source, kept between renders. Used by one render at a time."""

    def __init__(self) -> None:
        self._encoders: dict[str, FamilyEncoder] = {}
        self.arranger = policy.Arranger()
        self._gzipped: dict[str, tuple[bytes, bytes]] = {}  # format -> (plain, its gzip)
        self.collector_families = CollectorFamilies()
        # Target -> (the snapshot and modules its labelled copies were made from, copies).
        self._labelled: dict[str, tuple[TargetSnapshot, frozenset[str], list[Metric]]] = {}

    def encode(self, plan: policy.Plan, formats: Sequence[str]
               ) -> dict[str, dict[str, dict[str, Encoded]]]:
        encoded = {key: self._encoders.setdefault(key, FamilyEncoder()).encode(families,
                                                                               formats)
                   for key, families in plan.exposed.items()}
        for key in [k for k in self._encoders if k not in plan.exposed]:
            del self._encoders[key]
        return encoded

    def gzip(self, fmt: str, plain: bytes) -> bytes:
        """The body's gzip: the previous one again when the body is the same (nothing
        changed, as on an idle fixture host), else one compression of the whole (on a live
        host the changed families are spread over all of it: compressing pieces apart, to
        reuse the unchanged ones, cost more than the whole)."""
        previous = self._gzipped.get(fmt)
        if previous is not None and previous[0] == plain:
            return previous[1]
        gzipped = gzip_bytes(plain)
        self._gzipped[fmt] = (plain, gzipped)
        return gzipped

    def target_families(self, target: TargetSnapshot, modules: frozenset[str]) -> list[Metric]:
        cached = self._labelled.get(target.name)
        if cached is not None and cached[0] is target and cached[1] == modules:
            return cached[2]
        families = labelled(target.all_families(modules), target.labels)
        self._labelled[target.name] = (target, modules, families)
        return families

    def forget_targets(self, keep: Iterable[str]) -> None:
        kept = set(keep)
        for name in [n for n in self._labelled if n not in kept]:
            del self._labelled[name]


def pace(took: float) -> float:
    """Seconds to wait before the render after one that took `took` seconds."""
    return min(MAX_PACE_SECONDS, took * RENDER_PACE)


def render(
    generation: int,
    snapshots: Mapping[str, Snapshot],
    statuses: Sequence[CollectorStatus],
    runtime: RuntimeFamilies,
    formats: Iterable[str],
    targets: Mapping[str, TargetSnapshot] | None = None,
    target_modules: frozenset[str] = frozenset(),
    aliased: Collection[str] = (),
    cache: Cache | None = None,
) -> Exposition:
    cache = cache or Cache()
    targets = targets or {}
    formats = tuple(formats)
    local = sorted(snapshots, key=lambda n: (n in policy.YIELDING, n))
    remote = sorted(targets)
    cache.forget_targets(remote)
    own = [*cache.collector_families(statuses, {}, aliased), *runtime.collect()]
    sources: list[tuple[str, Sequence[Metric]]] = [(OWN, own)]
    sources += [(name, snapshots[name].families) for name in local
                if name not in policy.YIELDING]
    sources += [(TARGET_PREFIX + name, cache.target_families(targets[name], target_modules))
                for name in remote]
    sources += [(name, snapshots[name].families) for name in local if name in policy.YIELDING]
    plan, headed = cache.arranger.arrange(sources)
    # The agent's own families report what the check dropped (built again only when it
    # dropped something): same names, so same outcome.
    if plan.dropped:
        policy.replace(plan, OWN, cache.collector_families(statuses, plan.dropped, aliased))
    encoded = cache.encode(plan, formats)
    bodies = {}
    for fmt in formats:
        parts: list[bytes | memoryview] = []
        for key, name in headed:
            parts.append(encoded[key][name][fmt].whole)
            for other in plan.joined.get((key, name), ()):
                parts.append(encoded[other][name][fmt].samples)
        if fmt == OPENMETRICS:
            parts.append(OPENMETRICS_EOF)
        plain = b"".join(parts)
        gzipped = cache.gzip(fmt, plain) if len(plain) <= EAGER_GZIP_BYTES else None
        bodies[fmt] = Body(CONTENT_TYPES[fmt], plain, gzipped=gzipped)
    complete = all(status.completed_once for status in statuses)
    return Exposition(generation, complete, bodies, dict(plan.dropped))


def _render_then_trim(job: Callable[[], Exposition]) -> Exposition:
    """In the render thread: the render, then (now and then) freed heap back to the system."""
    exposition = job()
    memory.maybe_trim(size=sum(len(body.plain) for body in exposition.bodies.values()))
    return exposition


class Renderer:
    """Re-renders in its own thread whenever the registry changes; bursts coalesce. The render
    thread installs each render as `current` itself, so a tick costs the loop no wake-up for
    it."""

    def __init__(
        self,
        registry: Registry,
        statuses: Callable[[], Sequence[CollectorStatus]],
        executor: Executor,
        demand: Demand,
        exporter_metrics: bool = True,
        aliased: Collection[str] = (),
        settled: Callable[[], bool] = lambda: False,
        rendered: Callable[[], None] = lambda: None,
    ) -> None:
        """exporter_metrics: False leaves out the agent's process_* and python_* series
        (node_exporter's --web.disable-exporter-metrics). aliased: the collectors whose
        figures node_exporter's meta series repeat. settled: whether no snapshot is about to
        follow (no collector running), so a render need not wait for more. rendered: called
        on the loop as each render after a change starts (what it shows is published by
        then; its end does not wake the loop)."""
        self._registry = registry
        self._statuses = statuses
        self._executor = executor
        self._demand = demand
        self._aliased = aliased
        self._settled = settled
        self._rendered = rendered
        self._runtime = RuntimeFamilies(exporter_metrics)
        self._cache = Cache()
        self._probe_cache: dict[str, tuple[TargetSnapshot,
                                           dict[tuple[str | None, str], Body]]] = {}
        self._lock = asyncio.Lock()
        # Renders submitted and the last installed, by number; the render in flight.
        self._installing = threading.Lock()
        self._submitted = self._installed = 0
        self._pending: Future[Exposition] | None = None
        self._resume = 0.0  # no render before then (time.monotonic()), after a long one
        # Which SSH probe modules /metrics carries (with a `target` label); a setting.
        self.target_modules: frozenset[str] = frozenset()
        self.failing = False
        self.current = self.render_now()

    def render_now(self) -> Exposition:
        return self._inputs()()

    def _inputs(self) -> Callable[[], Exposition]:
        """The render of the registry as it is now, to run anywhere later."""
        registry = self._registry
        return functools.partial(
            render, registry.generation, registry.snapshots, self._statuses(), self._runtime,
            self._demand.formats, registry.targets, self.target_modules, self._aliased,
            self._cache)

    def _submit(self) -> Future[Exposition]:
        """A render of the registry as it is now (inputs are captured on the loop, so the
        render thread sees one consistent generation), run in the render thread, which also
        installs it: the loop is not woken when it ends, unless something awaits it."""
        with self._installing:
            self._submitted += 1
            number = self._submitted
        future = self._executor.submit(self._render_and_install, self._inputs(), number)
        self._pending = future
        return future

    def _render_and_install(self, job: Callable[[], Exposition], number: int) -> Exposition:
        """In the render thread. A failure keeps the last good exposition: /health and the
        watchdog see it through `failing`, and the next change tries again."""
        started = time.monotonic()
        try:
            exposition = _render_then_trim(job)
        except Exception as exc:
            if not self.failing:
                log.error("rendering the exposition failed", extra={"kv": {"err": repr(exc)}})
            self.failing = True
            raise
        ended = time.monotonic()
        with self._installing:
            # Renders run one at a time in submission order; should they not, an older one
            # never replaces a newer.
            if number > self._installed:
                self._installed = number
                self.current = exposition
                self.failing = False
                self._resume = ended + pace(ended - started)
        return exposition

    async def _render(self, missing: str | None = None) -> None:
        """A render now, awaited (the first request for a format waits for it)."""
        async with self._lock:
            if missing is not None and missing in self.current.bodies:
                return  # rendered while this request waited: one render serves the burst
            await asyncio.wrap_future(self._submit())

    async def run(self) -> None:
        while True:
            await self._registry.changed.wait()
            pending = self._pending
            if pending is not None and not pending.done():
                # A long render (many SSH targets) is still running: one at a time.
                with contextlib.suppress(Exception):
                    await asyncio.wrap_future(pending)
            wait = self._resume - time.monotonic()
            if wait > 0 or not self._settled():
                # Collectors due on the same tick finish within milliseconds of each other.
                await asyncio.sleep(max(COALESCE_SECONDS, wait))
            self._registry.changed.clear()
            self._rendered()
            self._submit()

    async def body(self, fmt: str) -> Body:
        """The current body in a format, rendering it now if nobody asked for it before."""
        if fmt not in self.current.bodies:
            self._demand.add(fmt)
            await self._render(fmt)
        return self.current.bodies[fmt]

    async def gzipped(self, body: Body) -> bytes:
        ready = body.gzipped_ready
        if ready is not None:
            return ready
        return await asyncio.get_running_loop().run_in_executor(self._executor, body.gzip)

    async def target_body(self, name: str, module: str | None, fmt: str) -> Body | None:
        """A target's latest series without its labels, as /probe serves them (None before
        its first round). Encoded in the render thread, once per round, format and module."""
        target = self._registry.targets.get(name)
        if target is None:
            return None
        key = (module, fmt)
        cached = self._probe_cache.get(name)
        if cached is not None and cached[0] is target and key in cached[1]:
            return cached[1][key]

        def build() -> Body:
            families = (target.families(module) if module is not None
                        else target.all_families())
            plain = encode(families, fmt) + (OPENMETRICS_EOF if fmt == OPENMETRICS else b"")
            return Body(CONTENT_TYPES[fmt], plain)

        body = await asyncio.get_running_loop().run_in_executor(self._executor, build)
        if self._registry.targets.get(name) is target:
            entry = self._probe_cache.get(name)
            if entry is None or entry[0] is not target:
                entry = self._probe_cache[name] = (target, {})
            entry[1][key] = body
        for gone in [n for n in self._probe_cache if n not in self._registry.targets]:
            del self._probe_cache[gone]
        return body
