"""drbd: node_drbd_*{device} from /proc/drbd (DRBD 8), as node_exporter's drbd collector (off
by default). No /proc/drbd (module not loaded) is no data. As there, nr (network received) is
taken as bytes while ns, dw, dr and oos are KiB."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import Metric

from agent.collectors.common import Families, parse_float

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

# key -> (metric, help, counter, multiplier)
NUMERICAL: dict[str, tuple[str, str, bool, float]] = {
    "ns": ("network_sent_bytes_total", "Total number of bytes sent via the network.", True,
           1024),
    "nr": ("network_received_bytes_total", "Total number of bytes received via the network.",
           True, 1),
    "dw": ("disk_written_bytes_total", "Net data written on local hard disk; in bytes.", True,
           1024),
    "dr": ("disk_read_bytes_total", "Net data read from local hard disk; in bytes.", True,
           1024),
    "al": ("activitylog_writes_total",
           "Number of updates of the activity log area of the meta data.", True, 1),
    "bm": ("bitmap_writes_total", "Number of updates of the bitmap area of the meta data.",
           True, 1),
    "lo": ("local_pending", "Number of open requests to the local I/O sub-system.", False, 1),
    "pe": ("remote_pending", "Number of requests sent to the peer, but that have not yet been "
           "answered by the latter.", False, 1),
    "ua": ("remote_unacknowledged", "Number of requests received by the peer via the network "
           "connection, but that have not yet been answered.", False, 1),
    "ap": ("application_pending", "Number of block I/O requests forwarded to DRBD, but not yet "
           "answered by DRBD.", False, 1),
    "ep": ("epochs", "Number of Epochs currently on the fly.", False, 1),
    "oos": ("out_of_sync_bytes", "Amount of data known to be out of sync; in bytes.", False,
            1024),
}
# key -> (metric, help, the value that counts as 1), for "local/remote" pairs
PAIRS: dict[str, tuple[str, str, str]] = {
    "ro": ("node_role_is_primary", "Whether the role of the node is in the primary state.",
           "Primary"),
    "ds": ("disk_state_is_up_to_date", "Whether the disk of the node is up to date.",
           "UpToDate"),
}


def drbd_families(text: str) -> list[Metric]:
    families = Families()
    device = "unknown"
    for word in text.split():
        kv = word.split(":")
        if len(kv) != 2:
            continue
        key, value = kv
        if key.isdigit() and value == "":
            device = f"drbd{int(key)}"  # a new device: "0:"
            continue
        if key in NUMERICAL:
            name, help_text, counter, multiplier = NUMERICAL[key]
            number = parse_float(value)
            if number is None:
                raise ValueError(f"invalid value {word!r} in /proc/drbd")
            families.add(f"node_drbd_{name}", help_text, ["device"], [device],
                         number * multiplier, counter=counter)
        elif key in PAIRS:
            name, help_text, ok = PAIRS[key]
            states = value.split("/")
            if len(states) < 2:
                raise ValueError(f"invalid pair {word!r} in /proc/drbd")
            for node, state in (("local", states[0]), ("remote", states[1])):
                families.add(f"node_drbd_{name}", help_text, ["device", "node"],
                             [device, node], 1.0 if state == ok else 0.0)
        elif key == "cs":
            families.add("node_drbd_connected", "Whether DRBD is connected to the peer.",
                         ["device"], [device], 1.0 if value == "Connected" else 0.0)
    return families.result()


class DrbdCollector:
    def __init__(self, procfs: Path) -> None:
        self._path = procfs / "drbd"

    def collect(self) -> list[Metric]:
        try:
            text = self._path.read_text()
        except FileNotFoundError:
            return []
        return drbd_families(text)


def create(context: Context, settings: Any) -> DrbdCollector:
    return DrbdCollector(context.procfs)
