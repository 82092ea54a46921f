"""The text format is written byte for byte as node_exporter's Go client writes it."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.parser import text_string_to_metric_families

from agent.exposition.text import encode_text, go_float


@pytest.mark.parametrize(("value", "text"), [
    (1.0, "1"), (0.0, "0"), (-1.0, "-1"), (4.06, "4.06"), (12.0, "12"), (123456.0, "123456"),
    (1234567.0, "1.234567e+06"), (1795955659.0, "1.795955659e+09"), (1e6, "1e+06"),
    (0.0001, "0.0001"), (0.00001, "1e-05"), (2.5e-07, "2.5e-07"), (-3.25, "-3.25"),
    (float("inf"), "+Inf"), (float("-inf"), "-Inf"), (float("nan"), "NaN"),
    (18446744073709551615.0, "1.8446744073709552e+19"),
])
def test_numbers_as_go_formats_them(value: float, text: str) -> None:
    assert go_float(value) == text


def test_sorting_escaping_and_histogram_order() -> None:
    gauge = GaugeMetricFamily("g", 'Help with \\ and\nnewline.', labels=["z", "a"])
    gauge.add_metric(["2", 'q"uote'], 1)
    gauge.add_metric(["1", "x\ny"], 2)
    empty = CounterMetricFamily("nothing", "No samples: left out.", labels=["a"])
    histogram = HistogramMetricFamily("h", "H.", labels=["k"])
    histogram.add_metric(["b"], [("0.5", 1), ("1.0", 3), ("+Inf", 4)], 2.5)
    histogram.add_metric(["a"], [("0.5", 0), ("1.0", 0), ("+Inf", 1234567)], 1e7)
    assert encode_text([gauge, empty, histogram]).decode() == (
        "# HELP g Help with \\\\ and\\nnewline.\n"
        "# TYPE g gauge\n"
        'g{a="q\\"uote",z="2"} 1\n'
        'g{a="x\\ny",z="1"} 2\n'
        "# HELP h H.\n"
        "# TYPE h histogram\n"
        'h_bucket{k="a",le="0.5"} 0\n'
        'h_bucket{k="a",le="1"} 0\n'
        'h_bucket{k="a",le="+Inf"} 1234567\n'
        'h_sum{k="a"} 1e+07\n'
        'h_count{k="a"} 1234567\n'
        'h_bucket{k="b",le="0.5"} 1\n'
        'h_bucket{k="b",le="1"} 3\n'
        'h_bucket{k="b",le="+Inf"} 4\n'
        'h_sum{k="b"} 2.5\n'
        'h_count{k="b"} 4\n')


def test_node_exporters_own_exposition_round_trips_byte_for_byte(node_exporter) -> None:
    """Parse the real node_exporter's output and write it again: the same bytes, family by
    family (its go_*, process_* and node_* families: counters, gauges, untyped, summaries)."""
    url = node_exporter("--collector.disable-defaults", "--collector.cpu", "--collector.stat",
                        "--collector.meminfo", "--collector.netdev", "--collector.filesystem")
    theirs = urllib.request.urlopen(url, timeout=10).read().decode()
    families = list(text_string_to_metric_families(theirs))
    assert len(families) > 40
    assert encode_text(families).decode() == theirs


def test_a_counter_declared_without_total_keeps_its_name_in_text_and_gains_it_in_openmetrics(
        ) -> None:
    from prometheus_client.openmetrics.parser import (
        text_string_to_metric_families as parse_openmetrics,
    )

    from agent.collectors.common import bare_counter
    from agent.exposition.formats import OPENMETRICS, encode

    family = bare_counter("namedprocess_scrape_errors", "Errors.", 2)
    assert encode_text([family]).decode() == (
        "# HELP namedprocess_scrape_errors Errors.\n"
        "# TYPE namedprocess_scrape_errors counter\n"
        "namedprocess_scrape_errors 2\n")
    (parsed,) = parse_openmetrics(encode([family], OPENMETRICS).decode() + "# EOF\n")
    assert parsed.type == "counter"
    assert [s.name for s in parsed.samples] == ["namedprocess_scrape_errors_total"]
