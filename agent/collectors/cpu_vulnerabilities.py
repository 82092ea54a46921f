"""cpu_vulnerabilities: node_cpu_vulnerabilities_info from
/sys/devices/system/cpu/vulnerabilities, as node_exporter's latest release (off by default).

Each file's state is its first words ("Not affected", "Vulnerable", "Mitigation", "Unknown",
case-insensitive) and the mitigation the words after them; text in no known form is state
"unknown" with the whole text as mitigation, as procfs. An unreadable file is left out.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from agent.collectors.common import go_order

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

STATES = ("not affected", "vulnerable", "mitigation", "unknown")


def parse_vulnerability(text: str) -> tuple[str, str]:
    """(state, mitigation) of one vulnerabilities file."""
    text = text.strip()
    lower = text.lower()
    for state in STATES:
        if lower.startswith(state):
            if state == "not affected":
                return state, ""
            return state, " ".join(text.split()[1:])
    return "unknown", text


class CpuVulnerabilitiesCollector:
    def __init__(self, sysfs: Path) -> None:
        self._dir = str(sysfs / "devices" / "system" / "cpu" / "vulnerabilities")

    def collect(self) -> list[Metric]:
        try:
            names = sorted(os.listdir(self._dir))
        except OSError:
            return []
        info = GaugeMetricFamily(
            "node_cpu_vulnerabilities_info",
            "Details of each CPU vulnerability reported by sysfs. The value of the series is an "
            "int encoded state of the vulnerability. The same state is stored as a string in "
            "the label", labels=["codename", "state", "mitigation"])
        for name in names:
            try:
                with open(os.path.join(self._dir, name), "rb") as handle:
                    text = handle.read().decode(errors="replace")
            except OSError:
                continue
            info.add_metric([name, *parse_vulnerability(text)], 1.0)
        return go_order([info])


def create(context: Context, settings: Any) -> CpuVulnerabilitiesCollector:
    return CpuVulnerabilitiesCollector(context.sysfs)
