"""mdadm: node_md_* from /proc/mdstat and /sys/block/md*/md, as node_exporter's latest release
(parsing rules of prometheus/procfs's MDStat and sysfs Mdraids).

No /proc/mdstat (md module not loaded) means no series. An array whose sysfs attributes cannot
be read is skipped in the sysfs series; a malformed /proc/mdstat fails the run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import Metric

from agent.collectors.common import Unchanged, family, list_dir, read_file_bytes, read_raw, sample

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

STATUS_LINE = re.compile(r"(\d+) blocks .*\[(\d+)/(\d+)\] \[([U_]+)\]")
RECOVERY_BLOCKS = re.compile(r"\((\d+)/(\d+)\)")

# node_md_state's state label -> the activity state procfs reports. "resync" and "check" are
# looked up as "resyncing" and "checking"; a reshaping array has none of the five set.
STATES = (("active", "active"), ("inactive", "inactive"), ("recovering", "recovering"),
          ("resync", "resyncing"), ("check", "checking"))


@dataclass(frozen=True)
class MDStat:
    name: str
    state: str  # active, inactive, recovering, resyncing, checking, reshaping, ...
    disks_active: int
    disks_total: int
    disks_failed: int
    disks_spare: int
    blocks_total: int
    blocks_synced: int


@dataclass(frozen=True)
class Mdraid:
    device: str
    disks: int  # raid_disks
    degraded: int  # 0 for levels without redundancy


def parse_mdstat(text: str) -> list[MDStat]:
    """procfs's parser: a device line, a status line, an optional bitmap line and an optional
    sync line. ValueError names what did not parse."""
    lines = text.split("\n")
    stats = []
    for i, line in enumerate(lines):
        if not line.strip() or line[0] == " " or line.startswith(("unused", "Personalities")):
            continue
        fields = line.split()
        if len(fields) < 3:
            raise ValueError(f"mdstat: expected 3+ fields in {line!r}")
        name, state = fields[0], fields[2]
        if len(lines) <= i + 3:
            raise ValueError(f"mdstat: too few lines for md device {name}")
        failed, spare = line.count("(F)"), line.count("(S)")
        active, total, size = _status(line, lines[i + 1])
        sync_line = lines[i + 3] if "bitmap" in lines[i + 2] else lines[i + 2]
        synced = size
        recovering, reshaping = "recovery" in sync_line, "reshape" in sync_line
        resyncing, checking = "resync" in sync_line, "check" in sync_line
        if recovering or reshaping or resyncing or checking:
            state = ("recovering" if recovering else "reshaping" if reshaping
                     else "checking" if checking else "resyncing")
            if "PENDING" in sync_line or "DELAYED" in sync_line:
                synced = 0
            else:
                match = RECOVERY_BLOCKS.search(sync_line)
                if match is None:
                    raise ValueError(f"mdstat: unexpected sync line for {name}: {sync_line!r}")
                synced = int(match.group(1))
        stats.append(MDStat(name, state, active, total, failed, spare, size, synced))
    return stats


def _status(device_line: str, status_line: str) -> tuple[int, int, int]:
    """(active, total, size in blocks) from the device and status lines."""
    fields = status_line.split()
    if not fields or not fields[0].isdigit():
        raise ValueError(f"mdstat: unexpected status line {status_line!r}")
    size = int(fields[0])
    if "raid0" in device_line or "linear" in device_line:
        total = device_line.count("[")  # only member disks carry [N] on the device line
        return total, total, size
    if "inactive" in device_line:
        return 0, 0, size
    match = STATUS_LINE.search(status_line)
    if match is None:
        raise ValueError(f"mdstat: no [total/active] in status line {status_line!r}")
    return int(match.group(3)), int(match.group(2)), size


REDUNDANT_LEVELS = ("raid1", "raid4", "raid5", "raid6", "raid10")

# (device, bytes of md/level, md/raid_disks, md/degraded; None where unreadable or not read)
MdAttributes = tuple[tuple[str, bytes | None, bytes | None, bytes | None], ...]


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode(errors="replace").strip()


def read_md_attributes(sysfs: Path) -> MdAttributes:
    """The attributes of the arrays under /sys/block/md*/md (degraded only where the level
    has redundancy)."""
    block = f"{sysfs}/block"
    raw = []
    for device in list_dir(block):
        if not device.startswith("md"):
            continue
        md = f"{block}/{device}/md"
        level = read_raw(f"{md}/level")
        degraded = read_raw(f"{md}/degraded") if _text(level) in REDUNDANT_LEVELS else None
        raw.append((device, level, read_raw(f"{md}/raid_disks"), degraded))
    return tuple(raw)


def parse_mdraids(raw: MdAttributes) -> list[Mdraid]:
    """The arrays; one whose attributes cannot be read is left out."""
    raids = []
    for device, level_data, disks_data, degraded_data in raw:
        level, disks = _text(level_data), _text(disks_data)
        if level is None or disks is None or not disks.isdigit():
            continue
        degraded = 0
        if level in REDUNDANT_LEVELS:
            text = _text(degraded_data)
            if text is None or not text.isdigit():
                continue
            degraded = int(text)
        raids.append(Mdraid(device, int(disks), degraded))
    return raids


def read_mdraids(sysfs: Path) -> list[Mdraid]:
    return parse_mdraids(read_md_attributes(sysfs))


def mdadm_families(stats: list[MDStat], raids: list[Mdraid]) -> list[Metric]:
    required = family("node_md_disks_required", "Total number of disks of device.", "gauge")
    disks = family("node_md_disks", "Number of active/failed/spare disks of device.", "gauge")
    state = family("node_md_state", "Indicates the state of md-device.", "gauge")
    blocks = family("node_md_blocks", "Total number of blocks on device.", "gauge")
    synced = family("node_md_blocks_synced", "Number of blocks synced on device.", "gauge")
    for md in stats:
        name = md.name
        required.samples.append(sample("node_md_disks_required", {"device": name},
                                       md.disks_total))
        disks.samples += (
            sample("node_md_disks", {"device": name, "state": "active"}, md.disks_active),
            sample("node_md_disks", {"device": name, "state": "failed"}, md.disks_failed),
            sample("node_md_disks", {"device": name, "state": "spare"}, md.disks_spare))
        state.samples += (sample("node_md_state", {"device": name, "state": label},
                                 1.0 if md.state == activity else 0.0)
                          for label, activity in STATES)
        blocks.samples.append(sample("node_md_blocks", {"device": name}, md.blocks_total))
        synced.samples.append(sample("node_md_blocks_synced", {"device": name},
                                     md.blocks_synced))
    raid_disks = family("node_md_raid_disks", "Number of raid disks on device.", "gauge")
    degraded = family("node_md_degraded", "Number of degraded disks on device.", "gauge")
    for raid in raids:
        raid_disks.samples.append(sample("node_md_raid_disks", {"device": raid.device},
                                         raid.disks))
        degraded.samples.append(sample("node_md_degraded", {"device": raid.device},
                                       raid.degraded))
    families: list[Metric] = [required, disks, state, blocks, synced, raid_disks, degraded]
    return [metric for metric in families if metric.samples]


class MdadmCollector:
    def __init__(self, procfs: Path, sysfs: Path) -> None:
        self._mdstat = procfs / "mdstat"
        self._sysfs = sysfs
        self._unchanged: Unchanged[list[Metric]] = Unchanged()

    def collect(self) -> list[Metric]:
        try:
            mdstat = read_file_bytes(self._mdstat)
        except FileNotFoundError:
            return []
        raw = (mdstat, read_md_attributes(self._sysfs))
        return self._unchanged.get(raw, lambda: mdadm_families(
            parse_mdstat(mdstat.decode(errors="replace")), parse_mdraids(raw[1])))


def create(context: Context, settings: Any) -> MdadmCollector:
    return MdadmCollector(context.procfs, context.sysfs)
