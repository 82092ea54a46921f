"""Snapshots in: each collector's latest metric families, replaced whole, never mutated."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from prometheus_client.metrics_core import Metric

from agent.formats import encode

_FamilyKey = tuple[object, ...]


def _content(family: Metric) -> _FamilyKey:
    # Samples are namedtuples: the list compares by value, element by element, in C.
    return (family.type, family.documentation, family.unit, family.samples)


class FamilyEncoder:
    """Encodes one collector's families, reusing the bytes of each family whose content is
    unchanged since the previous call: most host series are constant between ticks, and
    encoding costs far more than comparing. Used by one thread at a time."""

    def __init__(self) -> None:
        self._previous: dict[str, tuple[_FamilyKey, dict[str, bytes]]] = {}

    def encode(self, families: Iterable[Metric], formats: Iterable[str]
               ) -> dict[str, dict[str, bytes]]:
        """Family name -> format -> that family's bytes, in the families' order."""
        formats = tuple(formats)
        current = {}
        for family in families:
            content = _content(family)
            cached = self._previous.get(family.name)
            reusable = cached[1] if cached is not None and cached[0] == content else {}
            missing = [fmt for fmt in formats if fmt not in reusable]
            # A new dict when anything is added: the old one belongs to a published snapshot.
            bodies = {**reusable, **{fmt: encode([family], fmt) for fmt in missing}} \
                if missing else reusable
            current[family.name] = (content, bodies)
        self._previous = current
        return {name: bodies for name, (_, bodies) in current.items()}


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One collector's output, encoded once in the collector's own worker thread."""

    name: str
    families: tuple[Metric, ...]
    bodies: Mapping[str, bytes]
    family_names: frozenset[str]
    # Family name -> format -> bytes: lets the renderer merge a family several snapshots share.
    family_bodies: Mapping[str, Mapping[str, bytes]]
    # Unix time the families were taken: what remote write stamps their samples with.
    timestamp: float = field(default_factory=time.time)

    @classmethod
    def of(cls, name: str, families: Iterable[Metric], formats: Iterable[str] = (),
           encoder: FamilyEncoder | None = None) -> Snapshot:
        frozen = tuple(families)
        formats = tuple(formats)
        per_family = (encoder or FamilyEncoder()).encode(frozen, formats)
        bodies = {fmt: b"".join(b[fmt] for b in per_family.values()) for fmt in formats}
        return cls(name, frozen, MappingProxyType(bodies), frozenset(f.name for f in frozen),
                   MappingProxyType(per_family))

    def body(self, fmt: str) -> bytes:
        """The encoded families; formats first asked for after this run are encoded now."""
        return self.bodies[fmt] if fmt in self.bodies else encode(self.families, fmt)

    def family_body(self, name: str, fmt: str) -> bytes:
        """One family's bytes (header and samples)."""
        cached = self.family_bodies.get(name, {}).get(fmt)
        if cached is not None:
            return cached
        return encode([f for f in self.families if f.name == name], fmt)


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
