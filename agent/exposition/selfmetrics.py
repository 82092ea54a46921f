"""The agent's own series: per-collector status, build info, process and GC figures."""

from __future__ import annotations

import platform
from collections.abc import Collection, Iterable, Iterator, Mapping
from pathlib import Path

from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import CollectorRegistry
from prometheus_client.samples import Sample

from agent import __version__
from agent.exposition.status import CollectorStatus


def _family(name: str, help_text: str, typ: str, samples: list[Sample]) -> Metric:
    family = Metric(name, help_text, typ)
    family.samples = samples
    return family


def collector_families(
    statuses: Iterable[CollectorStatus], dropped: Mapping[str, int],
    aliased: Collection[str] = (),
) -> list[Metric]:
    """aliased: the collectors node_exporter also has (same name), whose figures its meta
    series repeat. Built every render, so samples are made directly (what GaugeMetricFamily's
    add_metric makes, without its checks per call)."""
    statuses = list(statuses)
    labels = [{"collector": status.name} for status in statuses]

    def samples(name: str, values: Iterable[float | None]) -> list[Sample]:
        return [Sample(name, label, value) for label, value in zip(labels, values, strict=True)
                if value is not None]

    duration = samples("hostagent_collector_duration_seconds",
                       [s.last_duration for s in statuses])
    success = samples("hostagent_collector_success",
                      [None if s.success is None else 1.0 if s.success else 0.0
                       for s in statuses])
    families = [
        _family("hostagent_collector_duration_seconds", "Duration of the collector's last run.",
                "gauge", duration),
        _family("hostagent_collector_success",
                "Whether the collector's last run succeeded (1) or failed or timed out (0).",
                "gauge", success),
        _family("hostagent_collector_last_success_timestamp_seconds",
                "Unix time of the collector's last successful run.", "gauge",
                samples("hostagent_collector_last_success_timestamp_seconds",
                        [s.last_success_time for s in statuses])),
        _family("hostagent_collector_interval_seconds",
                "Configured seconds between the collector's runs.", "gauge",
                samples("hostagent_collector_interval_seconds",
                        [float(s.interval) for s in statuses])),
        _family("hostagent_collector_timeouts",
                "Runs abandoned because they exceeded the collector's timeout.", "counter",
                samples("hostagent_collector_timeouts_total",
                        [float(s.timeouts) for s in statuses])),
        _family("hostagent_collector_skipped",
                "Ticks skipped because the previous run had not returned yet.", "counter",
                samples("hostagent_collector_skipped_total",
                        [float(s.skipped) for s in statuses])),
        _family("hostagent_collector_dropped_families",
                "Metric families dropped from a source's output because another source "
                "already exposes that name.", "gauge",
                [Sample("hostagent_collector_dropped_families", {"collector": name},
                        float(count)) for name, count in sorted(dropped.items())]),
    ]
    for samples_of, name, help_text in (
        (duration, "node_scrape_collector_duration_seconds",
         "node_exporter: Duration of a collector scrape."),
        (success, "node_scrape_collector_success",
         "node_exporter: Whether a collector succeeded."),
    ):
        # node_exporter's meta series, which dashboards chart, with hostagent's figures,
        # under node_exporter's collector names (the agent's own collectors, like runtime,
        # have none).
        families.append(_family(name, help_text, "gauge", [
            Sample(name, sample.labels, sample.value) for sample in samples_of
            if sample.labels["collector"] in aliased]))
    return families


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
