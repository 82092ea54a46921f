"""udp_queues: node_udp_queues{queue,ip}, the bytes queued in all UDP sockets' tx and rx queues,
summed over /proc/net/udp (ip="v4") and /proc/net/udp6 (ip="v6")."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import Metric

from agent.collectors.common import family, sample
from agent.collectors.heldfiles import HeldFiles

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

HELP = "Number of allocated memory in the kernel for UDP datagrams in bytes."


def parse_udp_queues(text: str) -> tuple[int, int]:
    """Sum the 'tx_queue:rx_queue' column (hex) of every socket line -> (tx, rx)."""
    tx = rx = 0
    for line in text.splitlines()[1:]:  # the first line is the header
        fields = line.split(None, 8)  # only the fifth column is needed
        if len(fields) < 8:
            raise ValueError(f"socket line with fewer than 8 columns: {line!r}")
        tx_queue, sep, rx_queue = fields[4].partition(":")
        if not sep:
            raise ValueError(f"tx/rx queues without a colon: {fields[4]!r}")
        tx += int(tx_queue, 16)
        rx += int(rx_queue, 16)
    return tx, rx


class UdpQueuesCollector:
    def __init__(self, procfs: Path) -> None:
        self._files = {"v4": str(procfs / "net" / "udp"), "v6": str(procfs / "net" / "udp6")}
        self._held = HeldFiles()

    def collect(self) -> list[Metric]:
        queues = {}
        for ip, path in self._files.items():
            try:
                queues[ip] = parse_udp_queues(self._held.read(path).decode())
            except FileNotFoundError:  # that IP version is disabled
                continue
        if not queues:
            raise FileNotFoundError(f"neither {self._files['v4']} nor {self._files['v6']} exists")
        return udp_queues_families(queues)


def udp_queues_families(queues: dict[str, tuple[int, int]]) -> list[Metric]:
    samples = []
    for ip, (tx, rx) in queues.items():
        samples.append(sample("node_udp_queues", {"queue": "tx", "ip": ip}, tx))
        samples.append(sample("node_udp_queues", {"queue": "rx", "ip": ip}, rx))
    return [family("node_udp_queues", HELP, "gauge", samples)]


def create(context: Context, settings: Any) -> UdpQueuesCollector:
    return UdpQueuesCollector(context.procfs)
