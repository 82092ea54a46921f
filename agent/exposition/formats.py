"""Exposition formats, their encoders (the text format as node_exporter's Go client writes it,
OpenMetrics as prometheus_client writes it) and which ones clients use."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.metrics_core import Metric

from agent.exposition.openmetrics import encode_openmetrics
from agent.exposition.text import encode_text

TEXT = "text"
OPENMETRICS = "openmetrics"
CONTENT_TYPES = {
    TEXT: "text/plain; version=0.0.4; charset=utf-8",
    OPENMETRICS: "application/openmetrics-text; version=1.0.0; charset=utf-8",
}
OPENMETRICS_EOF = b"# EOF\n"


def encode(families: Iterable[Metric], fmt: str) -> bytes:
    """Families in one format; OpenMetrics without its # EOF line, so bodies concatenate."""
    if fmt == TEXT:
        return encode_text(families)
    return encode_openmetrics(map(_openmetrics_counter, families))


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
