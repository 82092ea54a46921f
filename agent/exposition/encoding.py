"""Families -> bytes, with a cache: most series do not change between ticks, and encoding
costs far more than comparing."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from operator import is_
from typing import NamedTuple

from prometheus_client.metrics_core import Metric

from agent.exposition.formats import OPENMETRICS, encode
from agent.exposition.openmetrics import value_text
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


def _same_series(old: Metric, new: Metric) -> bool:
    """Whether new's OpenMetrics lines are old's with other values: the same header, the same
    series in the same order, samples without timestamp, exemplar or native histogram."""
    if (isinstance(old, PackedFamily) or isinstance(new, PackedFamily) or old.type != new.type
            or old.documentation != new.documentation or old.unit != new.unit
            or len(old.samples) != len(new.samples)):
        return False
    return all(a.name == b.name and a.labels == b.labels and a.timestamp is None
               and b.timestamp is None and a.exemplar is None and b.exemplar is None
               and a.native_histogram is None and b.native_histogram is None
               for a, b in zip(old.samples, new.samples, strict=True))


def _heads(encoded: Encoded, count: int) -> list[bytes] | None:
    """Each sample line of an OpenMetrics family up to its value ('name{labels} '), or None
    when its lines are not one a sample."""
    lines = bytes(encoded.samples).split(b"\n")
    if len(lines) != count + 1 or lines[-1]:
        return None
    heads = [line[:line.rfind(b" ") + 1] for line in lines[:-1]]
    return heads if all(heads) else None


def _revalued(family: Metric, encoded: Encoded, heads: list[bytes]) -> Encoded:
    """The family's OpenMetrics bytes from an earlier encoding of the same series: the header
    and each line's head are kept, only the values are written (most of a tick's changed
    families are counters and gauges whose series stay the same)."""
    header = encoded.whole[:len(encoded.whole) - len(encoded.samples)]
    whole = header + b"".join([head + value_text(sample.value).encode() + b"\n"
                               for head, sample in zip(heads, family.samples, strict=True)])
    return Encoded(whole, memoryview(whole)[len(header):])


class FamilyEncoder:
    """The bytes of one source's families, reusing those of each family whose content is
    unchanged since the previous call (the very same object, as a collector hands out again
    what it built from unchanged input, or equal samples). Used by one thread at a time."""

    def __init__(self) -> None:
        # name -> (family, its content, its bytes by format)
        self._previous: dict[str, tuple[Metric, _FamilyKey, dict[str, Encoded]]] = {}
        # name -> the heads of its OpenMetrics sample lines, once a family's values changed
        self._heads: dict[str, list[bytes] | None] = {}
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
        heads = self._heads
        for family in families:
            cached = previous.get(family.name)
            if cached is not None and cached[0] is family:
                content, bodies = cached[1], cached[2]
            else:
                content = _content(family)
                if cached is None or cached[1] == content:
                    bodies = {} if cached is None else cached[2]
                else:
                    bodies = self._revalue(family, cached[0], cached[2], heads)
            if not wanted <= bodies.keys():
                bodies = {**bodies, **{fmt: _encoded(family, fmt) for fmt in formats
                                       if fmt not in bodies}}
            current[family.name] = (family, content, bodies)
            out[family.name] = bodies
        self._previous = current
        for name in [name for name in heads if name not in current]:
            del heads[name]
        self._families, self._out, self._formats = families, out, wanted
        return out

    @staticmethod
    def _revalue(family: Metric, old: Metric, bodies: dict[str, Encoded],
                 heads: dict[str, list[bytes] | None]) -> dict[str, Encoded]:
        """The bytes of a family whose content changed: its OpenMetrics ones from the
        previous encoding when only values differ, none for the other formats."""
        encoded = bodies.get(OPENMETRICS)
        if encoded is None or not _same_series(old, family):
            heads.pop(family.name, None)
            return {}
        lines = heads.get(family.name)
        if lines is None:
            lines = heads[family.name] = _heads(encoded, len(family.samples))
            if lines is None:
                return {}
        return {OPENMETRICS: _revalued(family, encoded, lines)}


def labelled(families: Iterable[Metric], labels: Sequence[tuple[str, str]]) -> list[Metric]:
    """Copies of the families with the labels added in front of each sample's own."""
    out = []
    for family in families:
        copy = Metric(family.name, family.documentation, family.type, family.unit)
        copy.samples = [sample._replace(labels={**dict(labels), **sample.labels})
                        for sample in family.samples]
        out.append(copy)
    return out
