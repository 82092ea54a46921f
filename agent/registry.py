"""Snapshots in: each collector's latest metric families, replaced whole, never mutated."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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

    def encode(self, families: Iterable[Metric], formats: Iterable[str]) -> dict[str, bytes]:
        current = {}
        for family in families:
            content = _content(family)
            cached = self._previous.get(family.name)
            bodies = cached[1] if cached is not None and cached[0] == content else {}
            for fmt in formats:
                if fmt not in bodies:
                    bodies[fmt] = encode([family], fmt)
            current[family.name] = (content, bodies)
        self._previous = current
        return {fmt: b"".join(bodies[fmt] for _, bodies in current.values())
                for fmt in formats}


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One collector's output, encoded once in the collector's own worker thread."""

    name: str
    families: tuple[Metric, ...]
    bodies: Mapping[str, bytes]
    family_names: frozenset[str]

    @classmethod
    def of(cls, name: str, families: Iterable[Metric], formats: Iterable[str] = (),
           encoder: FamilyEncoder | None = None) -> Snapshot:
        frozen = tuple(families)
        bodies = (encoder or FamilyEncoder()).encode(frozen, formats)
        return cls(name, frozen, MappingProxyType(bodies), frozenset(f.name for f in frozen))

    def body(self, fmt: str) -> bytes:
        """The encoded families; formats first asked for after this run are encoded now."""
        return self.bodies[fmt] if fmt in self.bodies else encode(self.families, fmt)

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
