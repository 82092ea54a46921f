"""edac: node_edac_* ECC memory error counters from /sys/devices/system/edac/mc, as
node_exporter's latest release.

Per controller: the correctable and uncorrectable totals, plus the errors no csrow could be
blamed for as csrow "unknown"; then per csrow. Controllers that only expose dimm*/rank*
directories report their totals and the "unknown" rows. A counter that cannot be read is left
out, the rest of the controller kept.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import CounterMetricFamily, Metric

from agent.collectors.common import Unchanged, numbered, parse_int, read_text

if TYPE_CHECKING:
    from agent.collectors.catalog import Context


def _count(text: str | None) -> float | None:
    value = None if text is None else parse_int(text)
    return None if value is None or value < 0 else float(value)


COUNTS = ("ce_count", "ce_noinfo_count", "ue_count", "ue_noinfo_count")
# Of each controller: its number, its COUNTS as read (None: unreadable), and of each csrow its
# number, ce_count and ue_count.
ControllerRaw = tuple[str, tuple[str | None, ...], tuple[tuple[str, str | None, str | None], ...]]


def read_controller(controller: str) -> ControllerRaw:
    csrows = [f"{controller}/{name}" for name in numbered(controller, "csrow")]
    return (os.path.basename(controller)[2:],
            tuple(read_text(os.path.join(controller, name)) for name in COUNTS),
            tuple((os.path.basename(csrow)[5:], read_text(os.path.join(csrow, "ce_count")),
                   read_text(os.path.join(csrow, "ue_count"))) for csrow in csrows))


def edac_families(controllers: tuple[ControllerRaw, ...]) -> list[Metric]:
    ce = CounterMetricFamily("node_edac_correctable_errors",
                             "Total correctable memory errors.", labels=["controller"])
    ue = CounterMetricFamily("node_edac_uncorrectable_errors",
                             "Total uncorrectable memory errors.", labels=["controller"])
    row_ce = CounterMetricFamily("node_edac_csrow_correctable_errors",
                                 "Total correctable memory errors for this csrow.",
                                 labels=["controller", "csrow"])
    row_ue = CounterMetricFamily("node_edac_csrow_uncorrectable_errors",
                                 "Total uncorrectable memory errors for this csrow.",
                                 labels=["controller", "csrow"])
    for number, counts, csrows in controllers:
        for family, labels, text in zip(
                (ce, row_ce, ue, row_ue),
                ([number], [number, "unknown"], [number], [number, "unknown"]), counts,
                strict=True):
            value = _count(text)
            if value is not None:
                family.add_metric(labels, value)
        for row, *texts in csrows:
            for family, text in zip((row_ce, row_ue), texts, strict=True):
                value = _count(text)
                if value is not None:
                    family.add_metric([number, row], value)
    return [f for f in (ce, row_ce, row_ue, ue) if f.samples]


class EdacCollector:
    def __init__(self, sysfs: Path) -> None:
        self._mc = str(sysfs / "devices/system/edac/mc")
        self._unchanged: Unchanged[list[Metric]] = Unchanged()

    def collect(self) -> list[Metric]:
        raw = tuple(read_controller(f"{self._mc}/{name}") for name in numbered(self._mc, "mc"))
        return self._unchanged.get(raw, lambda: edac_families(raw))


def create(context: Context, settings: Any) -> EdacCollector:
    return EdacCollector(context.sysfs)
