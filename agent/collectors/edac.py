"""edac: node_edac_* ECC memory error counters from /sys/devices/system/edac/mc, as
node_exporter's latest release.

Per controller: the correctable and uncorrectable totals, plus the errors no csrow could be
blamed for as csrow "unknown"; then per csrow. Controllers that only expose dimm*/rank*
directories report their totals and the "unknown" rows. A counter that cannot be read is left
out, the rest of the controller kept.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import CounterMetricFamily, Metric

from agent.collectors.common import parse_int, read_text

if TYPE_CHECKING:
    from agent.collectors.catalog import Context


def _count(path: str) -> float | None:
    text = read_text(path)
    value = None if text is None else parse_int(text)
    return None if value is None or value < 0 else float(value)


class EdacCollector:
    def __init__(self, sysfs: Path) -> None:
        self._mc = str(sysfs / "devices/system/edac/mc")

    def collect(self) -> list[Metric]:
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
        for controller in sorted(glob.glob(os.path.join(glob.escape(self._mc), "mc[0-9]*"))):
            number = os.path.basename(controller)[2:]
            for family, labels, name in (
                    (ce, [number], "ce_count"), (row_ce, [number, "unknown"], "ce_noinfo_count"),
                    (ue, [number], "ue_count"), (row_ue, [number, "unknown"], "ue_noinfo_count")):
                value = _count(os.path.join(controller, name))
                if value is not None:
                    family.add_metric(labels, value)
            for csrow in sorted(glob.glob(os.path.join(glob.escape(controller), "csrow[0-9]*"))):
                row = os.path.basename(csrow)[5:]
                for family, name in ((row_ce, "ce_count"), (row_ue, "ue_count")):
                    value = _count(os.path.join(csrow, name))
                    if value is not None:
                        family.add_metric([number, row], value)
        return [f for f in (ce, row_ce, row_ue, ue) if f.samples]


def create(context: Context, settings: Any) -> EdacCollector:
    return EdacCollector(context.sysfs)
