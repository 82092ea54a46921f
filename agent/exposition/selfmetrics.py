"""The agent's own series: per-collector status, build info, process and GC figures."""

from __future__ import annotations

import contextlib
import gc
import os
import platform
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.samples import Sample

from agent import __version__
from agent.exposition.status import CollectorStatus


def _family(name: str, help_text: str, typ: str, samples: list[Sample]) -> Metric:
    family = Metric(name, help_text, typ)
    family.samples = samples
    return family


# (name, help, type, sample name, the collectors and their values, samples' labels)
_Spec = tuple[str, str, str, str, tuple[str, ...], tuple[float, ...]]


def _specs(statuses: Sequence[CollectorStatus], dropped: Mapping[str, int],
           aliased: Collection[str]) -> list[_Spec]:
    """What each of the families holds, without building them."""

    def series(values: Iterable[float | None]) -> tuple[tuple[str, ...], tuple[float, ...]]:
        kept = [(status.name, value) for status, value in zip(statuses, values, strict=True)
                if value is not None]
        return tuple(name for name, _ in kept), tuple(value for _, value in kept)

    duration = series([s.last_duration for s in statuses])
    success = series([None if s.success is None else 1.0 if s.success else 0.0
                      for s in statuses])

    def meta(of: tuple[tuple[str, ...], tuple[float, ...]]
             ) -> tuple[tuple[str, ...], tuple[float, ...]]:
        # node_exporter's meta series, which dashboards chart, with hostagent's figures,
        # under node_exporter's collector names (the agent's own collectors, like runtime,
        # have none).
        kept = [(name, value) for name, value in zip(*of, strict=True) if name in aliased]
        return tuple(name for name, _ in kept), tuple(value for _, value in kept)

    dropped_names = tuple(sorted(dropped))
    return [
        ("hostagent_collector_duration_seconds", "Duration of the collector's last run.",
         "gauge", "hostagent_collector_duration_seconds", *duration),
        ("hostagent_collector_success",
         "Whether the collector's last run succeeded (1) or failed or timed out (0).",
         "gauge", "hostagent_collector_success", *success),
        ("hostagent_collector_last_success_timestamp_seconds",
         "Unix time of the collector's last successful run.", "gauge",
         "hostagent_collector_last_success_timestamp_seconds",
         *series([s.last_success_time for s in statuses])),
        ("hostagent_collector_interval_seconds",
         "Configured seconds between the collector's runs.", "gauge",
         "hostagent_collector_interval_seconds", *series([float(s.interval) for s in statuses])),
        ("hostagent_collector_timeouts",
         "Runs abandoned because they exceeded the collector's timeout.", "counter",
         "hostagent_collector_timeouts_total", *series([float(s.timeouts) for s in statuses])),
        ("hostagent_collector_skipped",
         "Ticks skipped because the previous run had not returned yet.", "counter",
         "hostagent_collector_skipped_total", *series([float(s.skipped) for s in statuses])),
        ("hostagent_collector_dropped_families",
         "Metric families dropped from a source's output because another source "
         "already exposes that name.", "gauge", "hostagent_collector_dropped_families",
         dropped_names, tuple(float(dropped[name]) for name in dropped_names)),
        ("node_scrape_collector_duration_seconds",
         "node_exporter: Duration of a collector scrape.", "gauge",
         "node_scrape_collector_duration_seconds", *meta(duration)),
        ("node_scrape_collector_success", "node_exporter: Whether a collector succeeded.",
         "gauge", "node_scrape_collector_success", *meta(success)),
    ]


def _build(spec: _Spec) -> Metric:
    name, help_text, typ, sample_name, collectors, values = spec
    # Samples made directly: what GaugeMetricFamily's add_metric makes, without its checks.
    return _family(name, help_text, typ, [
        Sample(sample_name, {"collector": collector}, value)
        for collector, value in zip(collectors, values, strict=True)])


def collector_families(
    statuses: Iterable[CollectorStatus], dropped: Mapping[str, int],
    aliased: Collection[str] = (),
) -> list[Metric]:
    """aliased: the collectors node_exporter also has (same name), whose figures its meta
    series repeat."""
    return [_build(spec) for spec in _specs(list(statuses), dropped, aliased)]


class CollectorFamilies:
    """collector_families(), built every render: a family whose samples are the same as at
    the previous call is handed out again, the same object (the renderer then skips it at
    once): intervals, timeouts and most states stay the same tick after tick. One caller at
    a time."""

    def __init__(self) -> None:
        self._previous: dict[str, tuple[_Spec, Metric]] = {}

    def __call__(self, statuses: Iterable[CollectorStatus], dropped: Mapping[str, int],
                 aliased: Collection[str] = ()) -> list[Metric]:
        families = []
        previous, current = self._previous, {}
        for spec in _specs(list(statuses), dropped, aliased):
            cached = previous.get(spec[0])
            family = cached[1] if cached is not None and cached[0] == spec else _build(spec)
            current[spec[0]] = (spec, family)
            families.append(family)
        self._previous = current
        return families


def build_info() -> Metric:
    info = GaugeMetricFamily(
        "hostagent_build_info", "A metric with a constant 1 labelled by version.",
        labels=["version", "python_version"])
    info.add_metric([__version__, platform.python_version()], 1.0)
    return info


class RuntimeFamilies:
    """The process_* and python_* series of prometheus_client's process, GC and platform
    collectors (the same families, names, help and values), read at each render more cheaply:
    /proc/self/stat and /proc/self/limits once each (the limits gave max_fds and the address
    space limit in two reads), and the GC and platform families handed out again, the same
    objects, while they do not change (the renderer then skips them at once)."""

    def __init__(self, exporter_metrics: bool = True, proc: str = "/proc") -> None:
        self._exporter_metrics = exporter_metrics
        self._self = f"{proc}/self"
        self._real_proc = proc == "/proc"
        self._build_info = build_info()
        self._platform: list[Metric] = []
        self._gc: tuple[tuple[tuple[int, int, int], ...], list[Metric]] | None = None
        self._btime = 0.0
        if exporter_metrics:
            self._platform = list(PlatformCollector(registry=None).collect())
            with contextlib.suppress(OSError, ValueError):
                self._btime = _boot_time(f"{proc}/stat")
            self._ticks = float(os.sysconf("SC_CLK_TCK"))
            self._pagesize = float(os.sysconf("SC_PAGE_SIZE"))

    def collect(self) -> Iterator[Metric]:
        yield self._build_info
        if not self._exporter_metrics:
            return
        try:
            limits = _read(f"{self._self}/limits")
        except OSError:
            limits = None
        if self._btime:  # as ProcessCollector: nothing without the boot time
            yield from self._process(limits)
        yield from self._gc_families()
        yield from self._platform
        limit = None if limits is None else _limit(limits, "Max address space")
        if limit is not None:
            yield GaugeMetricFamily(
                "process_virtual_memory_max_bytes",
                "Maximum amount of virtual memory available in bytes.",
                value=UNLIMITED if limit == "unlimited" else float(limit))

    def _process(self, limits: str | None) -> list[Metric]:
        out: list[Metric] = []
        try:
            parts = _read(f"{self._self}/stat").rsplit(")", 1)[-1].split()
        except OSError:
            pass
        else:
            out += [
                GaugeMetricFamily("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                                  value=float(parts[20])),
                GaugeMetricFamily("process_resident_memory_bytes",
                                  "Resident memory size in bytes.",
                                  value=float(parts[21]) * self._pagesize),
                GaugeMetricFamily("process_start_time_seconds",
                                  "Start time of the process since unix epoch in seconds.",
                                  value=float(parts[19]) / self._ticks + self._btime),
                CounterMetricFamily("process_cpu_seconds_total",
                                    "Total user and system CPU time spent in seconds.",
                                    value=float(parts[11]) / self._ticks
                                    + float(parts[12]) / self._ticks),
            ]
        max_fds = None if limits is None else _limit(limits, "Max open files")
        if max_fds is not None:
            try:
                open_fds = _open_fds(f"{self._self}/fd", real=self._real_proc)
            except OSError:
                pass
            else:
                out += [GaugeMetricFamily("process_open_fds", "Number of open file descriptors.",
                                          open_fds),
                        GaugeMetricFamily("process_max_fds",
                                          "Maximum number of open file descriptors.",
                                          value=float(max_fds))]
        return out

    def _gc_families(self) -> list[Metric]:
        stats = tuple((s["collected"], s["uncollectable"], s["collections"])
                      for s in gc.get_stats())
        if self._gc is not None and self._gc[0] == stats:
            return self._gc[1]
        families: list[Metric] = []
        for index, (name, help_text) in enumerate((
                ("python_gc_objects_collected", "Objects collected during gc"),
                ("python_gc_objects_uncollectable", "Uncollectable objects found during GC"),
                ("python_gc_collections", "Number of times this generation was collected"))):
            family = CounterMetricFamily(name, help_text, labels=["generation"])
            for generation, figures in enumerate(stats):
                family.add_metric([str(generation)], value=figures[index])
            families.append(family)
        self._gc = (stats, families)
        return families


def _read(path: str) -> str:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 1 << 16).decode()
    finally:
        os.close(fd)


def _open_fds(fd_dir: str, real: bool) -> int:
    """How many descriptors the process has open. Since Linux 6.2 the size procfs reports for
    /proc/PID/fd is that count: one stat instead of listing a directory that the collectors'
    held files make ~130 entries long (60 us). Elsewhere (an older kernel reports 0, a
    directory that is not procfs) the entries are counted, the listing's own one included."""
    if real:
        size = os.stat(fd_dir).st_size
        if size > 0:
            return size
    return len(os.listdir(fd_dir))


def _boot_time(stat: str) -> float:
    for line in _read(stat).splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    return 0.0


def _limit(limits: str, name: str) -> str | None:
    """The soft limit of one /proc/PID/limits line ('unlimited' or a number)."""
    for line in limits.splitlines():
        if line.startswith(name):
            return line[len(name):].split()[0]
    return None


UNLIMITED = float(2**64 - 1)  # how Go's process collector reports "unlimited"
