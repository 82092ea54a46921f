"""Snapshots in: each source's latest metric families, replaced whole, never mutated.

The registry holds families only; turning them into bytes is the renderer's job. Local
sources (collectors, the agent's reload state) and remote SSH targets are kept apart: a
target's series describe another host and are never merged into this host's families.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from prometheus_client.metrics_core import Metric

from agent.exposition.compressed import CompressedFamilies


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One local source's output."""

    name: str
    families: tuple[Metric, ...]
    # Unix time the families were taken: what remote write stamps their samples with.
    timestamp: float = field(default_factory=time.time)

    @classmethod
    def of(cls, name: str, families: Iterable[Metric]) -> Snapshot:
        return cls(name, tuple(families))

    @property
    def family_names(self) -> frozenset[str]:
        return frozenset(f.name for f in self.families)


@dataclass(frozen=True, slots=True)
class TargetSnapshot:
    """One SSH target's latest round: families by probe module, without the target's labels
    (`labels` holds them, the `target` label first). A module only some readers ever need (the
    node module's series when /metrics does not carry them) is kept compressed: read it through
    families(), never .modules directly."""

    name: str
    labels: tuple[tuple[str, str], ...]
    modules: Mapping[str, tuple[Metric, ...] | CompressedFamilies]
    timestamp: float = field(default_factory=time.time)

    def families(self, module: str) -> Sequence[Metric]:
        group = self.modules.get(module, ())
        return group.unpack() if isinstance(group, CompressedFamilies) else group

    def all_families(self, modules: Container[str] | None = None) -> list[Metric]:
        """Every module's families (or those of `modules`), in module order."""
        return [family for module in self.modules if modules is None or module in modules
                for family in self.families(module)]


class Registry:
    """The only shared state between writers (scheduler, SSH worker) and readers (renderer).

    Only the event loop mutates it. Every change bumps the generation and wakes the
    renderer; the mappings handed to readers are fresh read-only copies, so a reader never
    sees a half-applied change.
    """

    def __init__(self) -> None:
        self._snapshots: Mapping[str, Snapshot] = MappingProxyType({})
        self._targets: Mapping[str, TargetSnapshot] = MappingProxyType({})
        self.generation = 0
        self.changed = asyncio.Event()

    @property
    def snapshots(self) -> Mapping[str, Snapshot]:
        return self._snapshots

    @property
    def targets(self) -> Mapping[str, TargetSnapshot]:
        return self._targets

    def publish(self, snapshot: Snapshot) -> None:
        self._snapshots = MappingProxyType({**self._snapshots, snapshot.name: snapshot})
        self.touch()

    def publish_all(self, snapshots: Iterable[Snapshot]) -> None:
        """Several snapshots as one change (a batch of collectors ending together)."""
        self._snapshots = MappingProxyType(
            {**self._snapshots, **{snapshot.name: snapshot for snapshot in snapshots}})
        self.touch()

    def remove(self, name: str) -> None:
        if name in self._snapshots:
            self._snapshots = MappingProxyType(
                {k: v for k, v in self._snapshots.items() if k != name})
        self.touch()

    def publish_target(self, target: TargetSnapshot) -> None:
        self._targets = MappingProxyType({**self._targets, target.name: target})
        self.touch()

    def remove_target(self, name: str) -> None:
        if name in self._targets:
            self._targets = MappingProxyType(
                {k: v for k, v in self._targets.items() if k != name})
        self.touch()

    def update_targets(self, changes: Iterable[tuple[str, TargetSnapshot | None]]) -> None:
        """Several targets published (or removed: None), in order, as one change."""
        targets = dict(self._targets)
        for name, target in changes:
            if target is None:
                targets.pop(name, None)
            else:
                targets[name] = target
        self._targets = MappingProxyType(targets)
        self.touch()

    def touch(self) -> None:
        """Something the exposition shows changed (also collector status, or a setting)."""
        self.generation += 1
        self.changed.set()
