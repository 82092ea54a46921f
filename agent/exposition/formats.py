"""Exposition formats, their encoders (the text format as node_exporter's Go client writes it,
OpenMetrics by prometheus_client) and which ones clients use."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from agent.exposition.text import encode_text

TEXT = "text"
OPENMETRICS = "openmetrics"
CONTENT_TYPES = {
    TEXT: "text/plain; version=0.0.4; charset=utf-8",
    OPENMETRICS: "application/openmetrics-text; version=1.0.0; charset=utf-8",
}
OPENMETRICS_EOF = b"# EOF\n"


class FamilySource:
    """Adapts a list of metric families to prometheus_client's collector protocol."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def encode(families: Iterable[Metric], fmt: str) -> bytes:
    """Families in one format; OpenMetrics without its # EOF line, so bodies concatenate."""
    if fmt == TEXT:
        return encode_text(families)
    source = FamilySource(map(_openmetrics_counter, families))
    body: bytes = generate_openmetrics(source)  # type: ignore[no-untyped-call]
    return body.removesuffix(OPENMETRICS_EOF)


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
