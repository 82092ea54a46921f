"""The agent's own series: per-collector status, build info, process and GC figures."""

from __future__ import annotations

import platform
from collections.abc import Collection, Iterable, Iterator, Mapping
from pathlib import Path

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)

from agent import __version__
from agent.exposition.status import CollectorStatus


def collector_families(
    statuses: Iterable[CollectorStatus], dropped: Mapping[str, int],
    aliased: Collection[str] = (),
) -> list[Metric]:
    """aliased: the collectors node_exporter also has (same name), whose figures its meta
    series repeat."""
    duration = GaugeMetricFamily(
        "hostagent_collector_duration_seconds",
        "Duration of the collector's last run.", labels=["collector"])
    success = GaugeMetricFamily(
        "hostagent_collector_success",
        "Whether the collector's last run succeeded (1) or failed or timed out (0).",
        labels=["collector"])
    last_success = GaugeMetricFamily(
        "hostagent_collector_last_success_timestamp_seconds",
        "Unix time of the collector's last successful run.", labels=["collector"])
    interval = GaugeMetricFamily(
        "hostagent_collector_interval_seconds",
        "Configured seconds between the collector's runs.", labels=["collector"])
    timeouts = CounterMetricFamily(
        "hostagent_collector_timeouts",
        "Runs abandoned because they exceeded the collector's timeout.", labels=["collector"])
    skipped = CounterMetricFamily(
        "hostagent_collector_skipped",
        "Ticks skipped because the previous run had not returned yet.", labels=["collector"])
    for status in statuses:
        labels = [status.name]
        if status.last_duration is not None:
            duration.add_metric(labels, status.last_duration)
        if status.success is not None:
            success.add_metric(labels, 1.0 if status.success else 0.0)
        if status.last_success_time is not None:
            last_success.add_metric(labels, status.last_success_time)
        interval.add_metric(labels, status.interval)
        timeouts.add_metric(labels, status.timeouts)
        skipped.add_metric(labels, status.skipped)
    clashes = GaugeMetricFamily(
        "hostagent_collector_dropped_families",
        "Metric families dropped from a source's output because another source already "
        "exposes that name.", labels=["collector"])
    for name, count in sorted(dropped.items()):
        clashes.add_metric([name], count)
    return [duration, success, last_success, interval, timeouts, skipped, clashes,
            *_node_exporter_aliases(duration, success, aliased)]


def _node_exporter_aliases(duration: Metric, success: Metric,
                           aliased: Collection[str]) -> list[Metric]:
    """node_exporter's meta series, which dashboards chart, with hostagent's figures, under
    node_exporter's collector names (the agent's own collectors, like runtime, have none)."""
    aliases: list[Metric] = []
    for family, name, help_text in (
        (duration, "node_scrape_collector_duration_seconds",
         "node_exporter: Duration of a collector scrape."),
        (success, "node_scrape_collector_success",
         "node_exporter: Whether a collector succeeded."),
    ):
        alias = GaugeMetricFamily(name, help_text, labels=["collector"])
        for sample in family.samples:
            if sample.labels["collector"] in aliased:
                alias.add_metric([sample.labels["collector"]], sample.value)
        aliases.append(alias)
    return aliases


def build_info() -> Metric:
    info = GaugeMetricFamily(
        "hostagent_build_info", "A metric with a constant 1 labelled by version.",
        labels=["version", "python_version"])
    info.add_metric([__version__, platform.python_version()], 1.0)
    return info


class RuntimeFamilies:
    """prometheus_client's process, GC and platform collectors, in a private registry."""

    def __init__(self, exporter_metrics: bool = True) -> None:
        self._exporter_metrics = exporter_metrics
        self._registry = CollectorRegistry(auto_describe=False)
        if exporter_metrics:
            for source in (ProcessCollector, GCCollector, PlatformCollector):
                source(registry=self._registry)
        self._build_info = build_info()

    def collect(self) -> Iterator[Metric]:
        yield self._build_info
        if not self._exporter_metrics:
            return
        yield from self._registry.collect()
        limit = virtual_memory_limit(Path("/proc/self/limits"))
        if limit is not None:
            yield GaugeMetricFamily(
                "process_virtual_memory_max_bytes",
                "Maximum amount of virtual memory available in bytes.", value=limit)


UNLIMITED = float(2**64 - 1)  # how Go's process collector reports "unlimited"


def virtual_memory_limit(limits: Path) -> float | None:
    """The soft 'Max address space' of /proc/self/limits, as node_exporter's Go runtime
    exports it (process_virtual_memory_max_bytes, charted by common node dashboards)."""
    try:
        text = limits.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("Max address space"):
            soft = line[len("Max address space"):].split()[0]
            return UNLIMITED if soft == "unlimited" else float(soft)
    return None
