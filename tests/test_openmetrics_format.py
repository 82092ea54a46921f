"""Our OpenMetrics writer gives exactly prometheus_client's bytes, on every family the agent
makes (each collector's golden output, the live default set, the agent's own families) and on
the awkward cases (escapes, units, info, stateset, histograms, names outside the charset)."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
    StateSetMetricFamily,
    SummaryMetricFamily,
)
from prometheus_client.openmetrics.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent.agent import build_jobs
from agent.config import Config
from agent.exposition.openmetrics import EOF_LINE, encode_openmetrics
from agent.exposition.selfmetrics import RuntimeFamilies
from tests.golden import GOLDEN


class Source:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def reference(families: list[Metric]) -> bytes:
    body: bytes = generate_latest(Source(families))  # type: ignore[no-untyped-call]
    return body.removesuffix(EOF_LINE)


def same(families: list[Metric]) -> None:
    assert encode_openmetrics(families) == reference(families)


@pytest.mark.parametrize("golden", sorted(GOLDEN.glob("*.prom")), ids=lambda p: p.stem)
def test_every_collectors_golden_families(golden: Path) -> None:
    families = list(text_string_to_metric_families(golden.read_text()))
    assert families
    same(families)


def test_the_live_default_set_and_the_agents_own_families() -> None:
    families = [f for job in build_jobs(Config()) for f in job.collector.collect()]
    families += list(RuntimeFamilies().collect())
    assert len(families) > 50
    same(families)


def test_awkward_cases() -> None:
    gauge = GaugeMetricFamily("g", 'Help with \\ and\nnewline and "quotes".', labels=["z", "a"],
                              unit="bytes")
    gauge.add_metric(["2", 'q"uo\\te\n'], 1e21)
    gauge.add_metric(["1", "é"], float("nan"))
    counter = CounterMetricFamily("c", "C.", labels=["k"])
    counter.add_metric(["v"], 3, created=1.5)
    histogram = HistogramMetricFamily("h", "H.", labels=["k"])
    histogram.add_metric(["b"], [("0.5", 1), ("1.0", 3), ("+Inf", 4)], 2.5)
    summary = SummaryMetricFamily("s", "S.", count_value=3, sum_value=1.25)
    info = InfoMetricFamily("i", "I.", value={"version": "1"})
    stateset = StateSetMetricFamily("st", "St.", value={"a": True, "b": False})
    odd = GaugeMetricFamily("odd:name", "Colon in the name.", value=-0.0001)
    same([gauge, counter, histogram, summary, info, stateset, odd])
