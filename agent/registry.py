"""Snapshots in: each collector's latest metric families, replaced whole, never mutated."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from prometheus_client.exposition import generate_latest as generate_text
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

OPENMETRICS_EOF = b"# EOF\n"


class FamilySource:
    """Adapts a list of metric families to prometheus_client's collector protocol."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def encode(families: Iterable[Metric]) -> tuple[bytes, bytes]:
    """Encode families as (Prometheus text 0.0.4, OpenMetrics body without the # EOF line)."""
    source = FamilySource(families)
    openmetrics = generate_openmetrics(source)  # type: ignore[no-untyped-call]
    return generate_text(source), openmetrics.removesuffix(OPENMETRICS_EOF)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One collector's output, encoded once in the collector's own worker thread."""

    name: str
    families: tuple[Metric, ...]
    text: bytes
    openmetrics: bytes
    family_names: frozenset[str]

    @classmethod
    def of(cls, name: str, families: Iterable[Metric]) -> Snapshot:
        frozen = tuple(families)
        text, openmetrics = encode(frozen)
        return cls(name, frozen, text, openmetrics, frozenset(f.name for f in frozen))

    def without(self, names: frozenset[str]) -> Snapshot:
        return Snapshot.of(self.name, (f for f in self.families if f.name not in names))


class Registry:
    """The only shared state between writers (scheduler, ssh worker) and readers (renderer).

    Only the event loop mutates it. Every change bumps the generation and wakes the
    renderer; the mapping handed to readers is a fresh read-only copy, so a reader never
    sees a half-applied change.
    """

    def __init__(self) -> None:
        self._snapshots: Mapping[str, Snapshot] = MappingProxyType({})
        self.generation = 0
        self.changed = asyncio.Event()

    @property
    def snapshots(self) -> Mapping[str, Snapshot]:
        return self._snapshots

    def publish(self, snapshot: Snapshot) -> None:
        self._replace({**self._snapshots, snapshot.name: snapshot})

    def remove(self, name: str) -> None:
        if name in self._snapshots:
            self._replace({k: v for k, v in self._snapshots.items() if k != name})
        else:
            self.touch()

    def touch(self) -> None:
        """Something the exposition shows besides snapshots (collector status) changed."""
        self.generation += 1
        self.changed.set()

    def _replace(self, snapshots: dict[str, Snapshot]) -> None:
        self._snapshots = MappingProxyType(snapshots)
        self.touch()
