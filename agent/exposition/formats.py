"""Exposition formats, their encoders (the text format as node_exporter's Go client writes it,
OpenMetrics as prometheus_client writes it) and which ones clients use."""

from __future__ import annotations

import re
from collections.abc import Iterable

from prometheus_client.metrics_core import Metric

from agent.exposition.openmetrics import encode_openmetrics, openmetrics_header
from agent.exposition.packed import PackedFamily
from agent.exposition.text import encode_text, header_name, text_header

TEXT = "text"
OPENMETRICS = "openmetrics"
CONTENT_TYPES = {
    TEXT: "text/plain; version=0.0.4; charset=utf-8",
    OPENMETRICS: "application/openmetrics-text; version=1.0.0; charset=utf-8",
}
OPENMETRICS_EOF = b"# EOF\n"
# Sample and label names OpenMetrics lines carry unchanged (a ':' is written as '_').
_PLAIN_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def encode(families: Iterable[Metric], fmt: str) -> bytes:
    """Families in one format; OpenMetrics without its # EOF line, so bodies concatenate."""
    parts: list[bytes] = []
    plain: list[Metric] = []  # a run of families to encode together
    for family in families:
        if isinstance(family, PackedFamily):
            parts.append(_encode_plain(plain, fmt))
            plain = []
            parts.append(_packed(family, fmt))
        else:
            plain.append(family)
    parts.append(_encode_plain(plain, fmt))
    return b"".join(parts)


def _encode_plain(families: list[Metric], fmt: str) -> bytes:
    if not families:
        return b""
    if fmt == TEXT:
        return encode_text(families)
    return encode_openmetrics(map(_openmetrics_counter, families))


def _packed(family: PackedFamily, fmt: str) -> bytes:
    """A packed family's lines under its header, as encode() writes the family unpacked."""
    if fmt == TEXT:
        if not family.count:
            return b""
        return text_header(family.text_name, family.documentation, family.type).encode() \
            + family.lines[TEXT]
    return openmetrics_header(family.name, family.documentation, family.type,
                              family.unit).encode() + family.lines[OPENMETRICS]


def _sample_lines(encoded: bytes) -> bytes:
    """The lines after the # HELP / # TYPE / # UNIT header."""
    start = 0
    while encoded.startswith(b"# ", start):
        start = encoded.index(b"\n", start) + 1
    return encoded[start:]


def pack(family: Metric) -> Metric:
    """The family as a PackedFamily, or as it is where packing would change its lines (a
    counter whose OpenMetrics samples are renamed, exemplars, timestamps, a unit)."""
    samples = family.samples
    if (family.unit or _openmetrics_counter(family) is not family
            or not all(_PLAIN_NAME.fullmatch(s.name) and all(map(_PLAIN_NAME.fullmatch, s.labels))
                       and s.timestamp is None and s.exemplar is None
                       and s.native_histogram is None for s in samples)):
        return family
    lines = {fmt: _sample_lines(_encode_plain([family], fmt)) for fmt in (TEXT, OPENMETRICS)}
    unique = len({(s.name, frozenset(s.labels.items())) for s in samples}) == len(samples)
    return PackedFamily(family.name, family.documentation, family.type, header_name(family),
                        lines, len(samples), unique)


class Demand:
    """The formats scrapers have asked for. Only those are encoded and rendered: Prometheus
    asks for OpenMetrics, so a fleet scraped by it never pays for the text format. Grows
    only; the set is replaced whole, so any thread may read it."""

    def __init__(self, formats: Iterable[str] = ()) -> None:
        self.formats: frozenset[str] = frozenset(formats)

    def add(self, fmt: str) -> None:
        self.formats = self.formats | {fmt}


def _openmetrics_counter(family: Metric) -> Metric:
    """OpenMetrics requires a counter's samples to end in _total: a counter declared without
    the suffix gets it there, as Go's OpenMetrics encoder adds it."""
    if family.type != "counter" or all(s.name != family.name for s in family.samples):
        return family
    renamed = Metric(family.name, family.documentation, family.type, family.unit)
    renamed.samples = [s._replace(name=s.name + "_total") if s.name == family.name else s
                       for s in family.samples]
    return renamed
