"""Families -> bytes, with a cache: most series do not change between ticks, and encoding
costs far more than comparing."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from operator import is_
from typing import NamedTuple

from prometheus_client.metrics_core import Metric

from agent.exposition.formats import encode
from agent.exposition.packed import PackedFamily

_FamilyKey = tuple[object, ...]


class Encoded(NamedTuple):
    """One family in one format: all its lines, and the same without the # HELP / # TYPE /
    # UNIT lines, for appending its samples under another source's header."""

    whole: bytes
    samples: memoryview


def _content(family: Metric) -> _FamilyKey:
    if isinstance(family, PackedFamily):  # its lines compare as fast, samples decode slowly
        return (family.type, family.documentation, family.unit, family.lines)
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
    unchanged since the previous call (the very same object, as a collector hands out again
    what it built from unchanged input, or equal samples). Used by one thread at a time."""

    def __init__(self) -> None:
        # name -> (family, its content, its bytes by format)
        self._previous: dict[str, tuple[Metric, _FamilyKey, dict[str, Encoded]]] = {}
        # The previous call's families and answer: a collector whose input did not change
        # hands out the very same families again.
        self._families: list[Metric] = []
        self._out: dict[str, dict[str, Encoded]] = {}
        self._formats: frozenset[str] = frozenset()

    def encode(self, families: Iterable[Metric], formats: Iterable[str]
               ) -> dict[str, dict[str, Encoded]]:
        """Family name -> format -> that family's bytes. Names must be unique."""
        families = list(families)
        formats = tuple(formats)
        wanted = frozenset(formats)
        if (wanted <= self._formats and len(families) == len(self._families)
                and all(map(is_, families, self._families))):
            return self._out
        previous = self._previous
        current = {}
        out = {}
        for family in families:
            cached = previous.get(family.name)
            if cached is not None and cached[0] is family:
                content, bodies = cached[1], cached[2]
            else:
                content = _content(family)
                bodies = cached[2] if cached is not None and cached[1] == content else {}
            if not wanted <= bodies.keys():
                bodies = {**bodies, **{fmt: _encoded(family, fmt) for fmt in formats
                                       if fmt not in bodies}}
            current[family.name] = (family, content, bodies)
            out[family.name] = bodies
        self._previous = current
        self._families, self._out, self._formats = families, out, wanted
        return out


def labelled(families: Iterable[Metric], labels: Sequence[tuple[str, str]]) -> list[Metric]:
    """Copies of the families with the labels added in front of each sample's own."""
    out = []
    for family in families:
        copy = Metric(family.name, family.documentation, family.type, family.unit)
        copy.samples = [sample._replace(labels={**dict(labels), **sample.labels})
                        for sample in family.samples]
        out.append(copy)
    return out
