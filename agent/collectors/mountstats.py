"""mountstats: node_mountstats_nfs_* from /proc/self/mountstats (per-mount NFS client statistics:
bytes, events, per-operation and per-transport counters), as node_exporter's latest release
with prometheus/procfs's parsing rules. The server address comes from the superblock options
(addr=) of the mountinfo line at the same position, as node_exporter pairs the two files.

Series are deduplicated by (export, protocol, mountaddr): a second mount of the same export
adds only its node_mountstats_nfs_mountpoint_info. No mountstats file means no series; a
malformed one fails the run, as procfs rejects the whole file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import Metric

from agent.collectors.common import Families, parse_int

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

# node_exporter reduces some counters modulo the float64 mantissa before converting them.
MANTISSA = 1 << 53
_UINT = re.compile(r"[0-9]+")
_GO_DURATION_NUMBER = re.compile(r"[-+]?([0-9]*\.[0-9]*|[0-9]+)")

BYTES_FIELDS = 8
EVENTS_FIELDS = 27
# Values after the protocol on an xprt: line, per statistics version and protocol.
TRANSPORT_LENGTHS = {("1.0", "tcp"): 10, ("1.0", "udp"): 7, ("1.1", "tcp"): 13,
                     ("1.1", "udp"): 10}
RDMA_MIN, RDMA_MAX = 20, 28


@dataclass
class Transport:
    protocol: str
    # procfs's NFSTransportStats order: port, bind, connect, connect idle time, idle time,
    # sends, receives, bad xids, active requests, backlog, max slots, sending queue, pending
    # queue, then RDMA's counters.
    values: list[int]


@dataclass
class Operation:
    name: str
    values: list[int]  # requests, transmissions, major timeouts, bytes sent, bytes received,
    # queue ms, response ms, request ms[, errors]

    @property
    def errors(self) -> int:
        return self.values[8] if len(self.values) > 8 else 0


@dataclass
class NFSStats:
    stat_version: str
    age_seconds: float = 0.0
    bytes: list[int] = field(default_factory=lambda: [0] * BYTES_FIELDS)
    events: list[int] = field(default_factory=lambda: [0] * EVENTS_FIELDS)
    operations: list[Operation] = field(default_factory=list)
    transports: list[Transport] = field(default_factory=list)


@dataclass
class Mount:
    device: str
    mount: str
    fstype: str
    stats: NFSStats | None = None


def _uint(text: str) -> int:
    """Go's strconv.ParseUint(text, 10, 64)."""
    if not _UINT.fullmatch(text) or int(text) >= 1 << 64:
        raise ValueError(f"invalid unsigned integer {text!r}")
    return int(text)


def _age_seconds(text: str) -> float:
    """time.ParseDuration(text + "s").Seconds() for the decimal numbers the kernel writes."""
    if not _GO_DURATION_NUMBER.fullmatch(text) or text.strip("+-") in ("", "."):
        raise ValueError(f"invalid NFS age {text!r}")
    try:
        nanoseconds = int(Decimal(text) * 1_000_000_000)
    except InvalidOperation:
        raise ValueError(f"invalid NFS age {text!r}") from None
    if abs(nanoseconds) > (1 << 63) - 1:
        raise ValueError(f"invalid NFS age {text!r}: out of range")
    seconds, rest = divmod(abs(nanoseconds), 1_000_000_000)
    value = seconds + rest / 1e9
    return -value if nanoseconds < 0 else value


def _lines(text: str) -> Iterator[list[str]]:
    """Whitespace-separated fields of each line, as bufio.Scanner and strings.Fields give them."""
    for line in text.split("\n"):
        yield line.split()


def parse_mountstats(text: str) -> list[Mount]:
    """procfs's parseMountStats: every 'device' line is a mount; one with a statvers= field
    must be nfs or nfs4 and is followed by its statistics block."""
    mounts = []
    lines = _lines(text)
    for fields in lines:
        if not fields or fields[0] != "device":
            continue
        if len(fields) < 8 or [fields[i] for i in (2, 3, 5, 6)] != \
                ["mounted", "on", "with", "fstype"]:
            raise ValueError(f"mountstats: invalid device line {' '.join(fields)!r}")
        mount = Mount(fields[1], fields[4], fields[7])
        if len(fields) > 8:
            if mount.fstype not in ("nfs", "nfs4"):
                raise ValueError(f"mountstats: cannot parse statistics of {mount.fstype!r}")
            version = fields[8].removeprefix("statvers=")
            mount.stats = _parse_nfs(lines, version)
        mounts.append(mount)
    return mounts


def _parse_nfs(lines: Iterator[list[str]], version: str) -> NFSStats:
    stats = NFSStats(version)
    for fields in lines:
        if not fields:
            break
        key = fields[0]
        if key in ("opts:", "age:", "bytes:", "events:") and len(fields) < 2:
            raise ValueError(f"mountstats: incomplete NFS line {' '.join(fields)!r}")
        if key == "age:":
            stats.age_seconds = _age_seconds(fields[1])
        elif key == "bytes:":
            if len(fields) - 1 != BYTES_FIELDS:
                raise ValueError(f"mountstats: invalid NFS bytes line {' '.join(fields)!r}")
            stats.bytes = [_uint(v) for v in fields[1:]]
        elif key == "events:":
            if len(fields) - 1 != EVENTS_FIELDS:
                raise ValueError(f"mountstats: invalid NFS events line {' '.join(fields)!r}")
            stats.events = [_uint(v) for v in fields[1:]]
        elif key == "xprt:":
            if len(fields) < 3:
                raise ValueError(f"mountstats: incomplete NFS transport {' '.join(fields)!r}")
            stats.transports.append(_parse_transport(fields[1], fields[2:], version))
        if key == "per-op":
            break
    # The per-operation lines come last, up to the blank line before the next device.
    for fields in lines:
        if not fields:
            break
        if len(fields) < 9:
            raise ValueError(f"mountstats: invalid NFS per-operation line {' '.join(fields)!r}")
        stats.operations.append(Operation(fields[0].removesuffix(":"),
                                          [_uint(v) for v in fields[1:]]))
    return stats


def _parse_transport(protocol: str, raw: list[str], version: str) -> Transport:
    if version not in ("1.0", "1.1"):
        raise ValueError(f"mountstats: unrecognized NFS transport stats version {version!r}")
    if protocol == "rdma" and version == "1.1":
        if len(raw) < RDMA_MIN:
            raise ValueError(f"mountstats: invalid NFS rdma transport ({len(raw)} values)")
    elif (version, protocol) not in TRANSPORT_LENGTHS:
        raise ValueError(f"mountstats: invalid NFS protocol {protocol!r} in stats {version}")
    elif len(raw) != TRANSPORT_LENGTHS[(version, protocol)]:
        raise ValueError(f"mountstats: invalid NFS {protocol} transport stats {version} "
                         f"({len(raw)} values)")
    if len(raw) > RDMA_MAX + 3:
        raise ValueError(f"mountstats: too many NFS transport values ({len(raw)})")
    values = [_uint(v) for v in raw] + [0] * (RDMA_MAX + 3 - len(raw))
    if protocol == "udp":
        # No connect count, connect idle time or idle time on UDP.
        values = [*values[:2], 0, 0, 0, *values[2:]]
    elif protocol == "rdma":
        # No maximum slots, sending or pending queue on RDMA.
        values = [*values[:10], 0, 0, 0, *values[10:]]
    return Transport(protocol, values)


def parse_mountinfo_addresses(text: str) -> list[str]:
    """The addr= superblock option of each /proc/self/mountinfo line, in order ("" without
    one), validating the lines as procfs's parseMountInfoString does."""
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    addresses = []
    for line in lines:
        fields = line.removesuffix("\r").split(" ")
        if len(fields) < 10:
            raise ValueError(f"mountinfo: too few fields in {line!r}")
        if fields[-4] != "-":
            raise ValueError(f"mountinfo: no separator in {line!r}")
        if parse_int(fields[0]) is None or parse_int(fields[1]) is None:
            raise ValueError(f"mountinfo: malformed ids in {line!r}")
        options: dict[str, str] = {}
        for option in fields[-1].split(","):
            key, *rest = option.split("=")
            options[key] = rest[0] if rest else ""
        addresses.append(options.get("addr", ""))
    return addresses


LABELS = ["export", "protocol", "mountaddr"]
P = "node_mountstats_nfs_"

BYTES = (  # name, help, index in the bytes: line
    ("read_bytes_total", "Number of bytes read using the read() syscall.", 0),
    ("write_bytes_total", "Number of bytes written using the write() syscall.", 1),
    ("direct_read_bytes_total", "Number of bytes read using the read() syscall in O_DIRECT "
     "mode.", 2),
    ("direct_write_bytes_total", "Number of bytes written using the write() syscall in "
     "O_DIRECT mode.", 3),
    ("total_read_bytes_total", "Number of bytes read from the NFS server, in total.", 4),
    ("total_write_bytes_total", "Number of bytes written to the NFS server, in total.", 5),
    ("read_pages_total", "Number of pages read directly via mmap()'d files.", 6),
    ("write_pages_total", "Number of pages written directly via mmap()'d files.", 7),
)

# node_exporter's help texts, including the two it copies from a neighbour.
EVENTS = (  # name, help, index in the events: line (18, congestion wait, is not exported)
    ("inode_revalidate", "Number of times cached inode attributes are re-validated from the "
     "server.", 0),
    ("dnode_revalidate", "Number of times cached dentry nodes are re-validated from the "
     "server.", 1),
    ("data_invalidate", "Number of times an inode cache is cleared.", 2),
    ("attribute_invalidate", "Number of times cached inode attributes are invalidated.", 3),
    ("vfs_open", "Number of times cached inode attributes are invalidated.", 4),
    ("vfs_lookup", "Number of times a directory lookup has occurred.", 5),
    ("vfs_access", "Number of times permissions have been checked.", 6),
    ("vfs_update_page", "Number of updates (and potential writes) to pages.", 7),
    ("vfs_read_page", "Number of pages read directly via mmap()'d files.", 8),
    ("vfs_read_pages", "Number of times a group of pages have been read.", 9),
    ("vfs_write_page", "Number of pages written directly via mmap()'d files.", 10),
    ("vfs_write_pages", "Number of times a group of pages have been written.", 11),
    ("vfs_getdents", "Number of times directory entries have been read with getdents().", 12),
    ("vfs_setattr", "Number of times directory entries have been read with getdents().", 13),
    ("vfs_flush", "Number of pending writes that have been forcefully flushed to the "
     "server.", 14),
    ("vfs_fsync", "Number of times fsync() has been called on directories and files.", 15),
    ("vfs_lock", "Number of times locking has been attempted on a file.", 16),
    ("vfs_file_release", "Number of times files have been closed and released.", 17),
    ("truncation", "Number of times files have been truncated.", 19),
    ("write_extension", "Number of times a file has been grown due to writes beyond its "
     "existing end.", 20),
    ("silly_rename", "Number of times a file was removed while still open by another "
     "process.", 21),
    ("short_read", "Number of times the NFS server gave less data than expected while "
     "reading.", 22),
    ("short_write", "Number of times the NFS server wrote less data than expected while "
     "writing.", 23),
    ("jukebox_delay", "Number of times the NFS server indicated EJUKEBOX; retrieving data "
     "from offline storage.", 24),
    ("pnfs_read", "Number of NFS v4.1+ pNFS reads.", 25),
    ("pnfs_write", "Number of NFS v4.1+ pNFS writes.", 26),
)

TRANSPORT = (  # name, help, index in Transport.values, counter
    ("transport_bind_total", "Number of times the client has had to establish a connection "
     "from scratch to the NFS server.", 1, True),
    ("transport_connect_total", "Number of times the client has made a TCP connection to the "
     "NFS server.", 2, True),
    ("transport_idle_time_seconds", "Duration since the NFS mount last saw any RPC traffic, "
     "in seconds.", 4, False),
    ("transport_sends_total", "Number of RPC requests for this mount sent to the NFS server.",
     5, True),
    ("transport_receives_total", "Number of RPC responses for this mount received from the "
     "NFS server.", 6, True),
    ("transport_bad_transaction_ids_total", "Number of times the NFS server sent a response "
     "with a transaction ID unknown to this client.", 7, True),
    ("transport_backlog_queue_total", "Total number of items added to the RPC backlog queue.",
     9, True),
    ("transport_maximum_rpc_slots", "Maximum number of simultaneously active RPC requests "
     "ever used.", 10, False),
    ("transport_sending_queue_total", "Total number of items added to the RPC transmission "
     "sending queue.", 11, True),
    ("transport_pending_queue_total", "Total number of items added to the RPC transmission "
     "pending queue.", 12, True),
)
IDLE_TIME = 4  # the one transport value node_exporter reduces modulo the mantissa

OPERATIONS = (  # name, help
    ("operations_requests_total", "Number of requests performed for a given operation."),
    ("operations_transmissions_total", "Number of times an actual RPC request has been "
     "transmitted for a given operation."),
    ("operations_major_timeouts_total", "Number of times a request has had a major timeout "
     "for a given operation."),
    ("operations_sent_bytes_total", "Number of bytes sent for a given operation, including "
     "RPC headers and payload."),
    ("operations_received_bytes_total", "Number of bytes received for a given operation, "
     "including RPC headers and payload."),
    ("operations_queue_time_seconds_total", "Duration all requests spent queued for "
     "transmission for a given operation before they were sent, in seconds."),
    ("operations_response_time_seconds_total", "Duration all requests took to get a reply "
     "back after a request for a given operation was transmitted, in seconds."),
    ("operations_request_time_seconds_total", "Duration all requests took from when a "
     "request was enqueued to when it was completely handled for a given operation, in "
     "seconds."),
    ("operations_errors_total", "Number of errors for a given operation"),
)


def _operation_values(operation: Operation) -> list[float]:
    """In OPERATIONS' order; the millisecond sums (reduced modulo the mantissa) in seconds."""
    v = operation.values
    return [v[0], v[1], v[2], v[3], v[4], (v[5] % MANTISSA) / 1000, (v[6] % MANTISSA) / 1000,
            (v[7] % MANTISSA) / 1000, operation.errors % MANTISSA]


def _add_stats(out: Families, stats: NFSStats, labels: list[str]) -> None:
    out.add(P + "age_seconds_total", "The age of the NFS mount in seconds.", LABELS, labels,
            stats.age_seconds, counter=True)
    for name, help_text, index in BYTES:
        out.add(P + name, help_text, LABELS, labels, stats.bytes[index], counter=True)
    for number, transport in enumerate(stats.transports):
        values = [*labels, str(number)]
        for name, help_text, index, counter in TRANSPORT:
            raw = transport.values[index]
            out.add(P + name, help_text, [*LABELS, "transport"], values,
                    raw % MANTISSA if index == IDLE_TIME else raw, counter=counter)
    for operation in stats.operations:
        values = [*labels, operation.name]
        for (name, help_text), seconds in zip(OPERATIONS, _operation_values(operation),
                                              strict=True):
            out.add(P + name, help_text, [*LABELS, "operation"], values, seconds, counter=True)
    for name, help_text, index in EVENTS:
        out.add(f"{P}event_{name}_total", help_text, LABELS, labels, stats.events[index],
                counter=True)


def mountstats_families(mounts: list[Mount], addresses: list[str]) -> list[Metric]:
    """node_exporter's Update: each NFS mount, paired by position with its mountinfo line."""
    out = Families()
    devices: set[tuple[str, str, str]] = set()
    for index, mount in enumerate(mounts):
        if mount.stats is None:
            continue
        address = addresses[index] if index < len(addresses) else ""
        for transport in mount.stats.transports:
            labels = [mount.device, transport.protocol, address]
            # Families drops a repeated mountpoint_info series, as node_exporter skips it.
            out.add(P + "mountpoint_info", "Info metric for an NFS mountpoint.",
                    [*LABELS, "mountpoint"], [*labels, mount.mount], 1)
            if tuple(labels) in devices:
                break
            devices.add((labels[0], labels[1], labels[2]))
            _add_stats(out, mount.stats, labels)
    return out.result()


class MountstatsCollector:
    def __init__(self, procfs: Path) -> None:
        self._self = procfs / "self"

    def collect(self) -> list[Metric]:
        try:
            text = (self._self / "mountstats").read_text(errors="replace")
        except FileNotFoundError:
            return []
        mounts = parse_mountstats(text)
        addresses = parse_mountinfo_addresses(
            (self._self / "mountinfo").read_text(errors="replace"))
        return mountstats_families(mounts, addresses)


def create(context: Context, settings: Any) -> MountstatsCollector:
    return MountstatsCollector(context.procfs)
