"""meminfo_numa: node_memory_numa_* per NUMA node from /sys/devices/system/node/node*/meminfo
and numastat, as node_exporter's meminfo_numa collector (off by default). Node directories
need not be contiguous (node0, node2 on a machine with a node offline or memoryless): each
is read by its own number."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import Metric

from agent.collectors.common import Families, list_dir, parse_float

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

NODE_DIR = re.compile(r"^node([0-9]+)")  # node_exporter's glob node[0-9]*
PARENTHESES = re.compile(r"\((.*)\)")

# (metric name, node, value, counter)
Sample = tuple[str, str, float, bool]


def parse_meminfo(text: str) -> list[Sample]:
    """Lines "Node 0 Active(anon):  690304 kB": kB values in bytes with a _bytes name,
    unit-less ones (HugePages_*) as they are."""
    samples: list[Sample] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        parts = line.split()
        value = parse_float(parts[3]) if len(parts) > 3 else None
        if value is None:
            raise ValueError(f"invalid value in meminfo: {line}")
        name = PARENTHESES.sub(r"_\1", parts[2].rstrip(":"))
        if len(parts) == 5 and parts[4] == "kB":
            value *= 1024
            name += "_bytes"
        elif len(parts) != 4:
            raise ValueError(f"invalid line in meminfo: {line}")
        samples.append((name, parts[1], value, False))
    return samples


def parse_numastat(text: str, node: str) -> list[Sample]:
    samples: list[Sample] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"line scan did not return 2 fields: {line}")
        value = parse_float(parts[1])
        if value is None:
            raise ValueError(f"invalid value in numastat: {line}")
        samples.append((parts[0] + "_total", node, value, True))
    return samples


def meminfo_numa_families(samples: list[Sample]) -> list[Metric]:
    families = Families()
    for name, node, value, counter in samples:
        families.add(f"node_memory_numa_{name}", f"Memory information field {name}.",
                     ["node"], [node], value, counter=counter)
    return families.result()


class MeminfoNumaCollector:
    def __init__(self, sysfs: Path) -> None:
        self._root = sysfs / "devices/system/node"

    def collect(self) -> list[Metric]:
        samples: list[Sample] = []
        for entry in list_dir(self._root):
            match = NODE_DIR.match(entry)
            if not match:
                continue
            node_dir = self._root / entry
            try:
                meminfo = (node_dir / "meminfo").read_text()
                numastat = (node_dir / "numastat").read_text()
            except OSError:
                continue  # a node going away while read costs that node only
            samples += parse_meminfo(meminfo)
            samples += parse_numastat(numastat, match[1])
        return meminfo_numa_families(samples)


def create(context: Context, settings: Any) -> MeminfoNumaCollector:
    return MeminfoNumaCollector(context.sysfs)
