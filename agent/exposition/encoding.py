"""Families -> bytes, with a cache: most series do not change between ticks, and encoding
costs far more than comparing."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from prometheus_client.metrics_core import Metric

from agent.exposition.formats import encode

_FamilyKey = tuple[object, ...]


class Encoded(NamedTuple):
    """One family in one format: all its lines, and the same without the # HELP / # TYPE /
    # UNIT lines, for appending its samples under another source's header."""

    whole: bytes
    samples: memoryview


def _content(family: Metric) -> _FamilyKey:
    # Samples are namedtuples: the list compares by value, element by element, in C.
    return (family.type, family.documentation, family.unit, family.samples)


def _encoded(family: Metric, fmt: str) -> Encoded:
    whole = encode([family], fmt)
    start = 0
    while whole.startswith(b"# ", start):
        start = whole.index(b"\n", start) + 1
    return Encoded(whole, memoryview(whole)[start:])


class FamilyEncoder:
    """The bytes of one source's families, reusing those of each family whose content is
    unchanged since the previous call. Used by one thread at a time."""

    def __init__(self) -> None:
        self._previous: dict[str, tuple[_FamilyKey, dict[str, Encoded]]] = {}

    def encode(self, families: Iterable[Metric], formats: Iterable[str]
               ) -> dict[str, dict[str, Encoded]]:
        """Family name -> format -> that family's bytes. Names must be unique."""
        formats = tuple(formats)
        current = {}
        for family in families:
            content = _content(family)
            cached = self._previous.get(family.name)
            reusable = cached[1] if cached is not None and cached[0] == content else {}
            missing = [fmt for fmt in formats if fmt not in reusable]
            bodies = {**reusable, **{fmt: _encoded(family, fmt) for fmt in missing}} \
                if missing else reusable
            current[family.name] = (content, bodies)
        self._previous = current
        return {name: bodies for name, (_, bodies) in current.items()}


def labelled(families: Iterable[Metric], labels: Sequence[tuple[str, str]]) -> list[Metric]:
    """Copies of the families with the labels added in front of each sample's own."""
    out = []
    for family in families:
        copy = Metric(family.name, family.documentation, family.type, family.unit)
        copy.samples = [sample._replace(labels={**dict(labels), **sample.labels})
                        for sample in family.samples]
        out.append(copy)
    return out
