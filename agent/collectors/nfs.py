"""nfs: node_nfs_* from /proc/net/rpc/nfs (the NFS client's RPC statistics), as node_exporter's
latest release with prometheus/procfs's parsing rules. nfsd shares the line parser.

No file (no NFS client module) means no series; a malformed file fails the run, as there.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import CounterMetricFamily, Metric

from agent.collectors.common import Unchanged, family, read_file_bytes, sample

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

# Procedure names per version, in the kernel's column order (procfs's struct field names, which
# node_exporter uses as the method label).
V2 = ("Null", "GetAttr", "SetAttr", "Root", "Lookup", "ReadLink", "Read", "WrCache", "Write",
      "Create", "Remove", "Rename", "Link", "SymLink", "MkDir", "RmDir", "ReadDir", "FsStat")
V3 = ("Null", "GetAttr", "SetAttr", "Lookup", "Access", "ReadLink", "Read", "Write", "Create",
      "MkDir", "SymLink", "MkNod", "Remove", "RmDir", "Rename", "Link", "ReadDir", "ReadDirPlus",
      "FsStat", "FsInfo", "PathConf", "Commit")
CLIENT_V4 = (
    "Null", "Read", "Write", "Commit", "Open", "OpenConfirm", "OpenNoattr", "OpenDowngrade",
    "Close", "Setattr", "FsInfo", "Renew", "SetClientID", "SetClientIDConfirm", "Lock", "Lockt",
    "Locku", "Access", "Getattr", "Lookup", "LookupRoot", "Remove", "Rename", "Link", "Symlink",
    "Create", "Pathconf", "StatFs", "ReadLink", "ReadDir", "ServerCaps", "DelegReturn", "GetACL",
    "SetACL", "FsLocations", "ReleaseLockowner", "Secinfo", "FsidPresent", "ExchangeID",
    "CreateSession", "DestroySession", "Sequence", "GetLeaseTime", "ReclaimComplete",
    "GetDeviceInfo", "LayoutGet", "LayoutCommit", "LayoutReturn", "SecinfoNoName", "TestStateID",
    "FreeStateID", "GetDeviceList", "BindConnToSession", "DestroyClientID", "Seek", "Allocate",
    "DeAllocate", "LayoutStats", "Clone")

Lines = dict[str, list[int]]


def parse_lines(text: str, known: frozenset[str]) -> Lines:
    """'key value...' lines -> {key: values}. ValueError for a line without a value, a
    non-numeric value or an unknown key (procfs rejects the whole file for any of them). For
    "th" only the first two values are kept: older kernels follow them with a float histogram."""
    lines: Lines = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2:
            raise ValueError(f"invalid NFS metric line {line!r}")
        key, raw = parts[0], parts[1:3] if parts[0] == "th" else parts[1:]
        if key not in known:
            raise ValueError(f"unknown NFS metric line {key!r}")
        if not all(value.isdigit() for value in raw):
            raise ValueError(f"non-numeric value in NFS metric line {line!r}")
        lines[key] = [int(value) for value in raw]
    return lines


def fixed(lines: Lines, key: str, count: int) -> list[int]:
    """A line of exactly count values; zeros when the line is absent."""
    values = lines.get(key)
    if values is None:
        return [0] * count
    if len(values) != count:
        raise ValueError(f"invalid NFS {key} line: {len(values)} values, expected {count}")
    return values


def procedures(lines: Lines, key: str, names: tuple[str, ...], minimum: int | None = None,
               pad: bool = False) -> dict[str, int]:
    """A 'procN COUNT v1 v2 ...' line by procedure name; COUNT must match the values. Fewer than
    minimum values is an error; with pad, a shorter line (older kernel) reads as zeros."""
    values = lines.get(key)
    if values is None:
        return dict.fromkeys(names, 0)
    count, rest = values[0], values[1:]
    if len(rest) != count or (minimum is not None and count < minimum):
        raise ValueError(f"invalid NFS {key} line: {len(rest)} values, count {count}")
    if len(rest) < len(names) and not pad:
        raise ValueError(f"invalid NFS {key} line: {len(rest)} values")
    rest = rest + [0] * (len(names) - len(rest))
    return dict(zip(names, rest, strict=False))


def requests_family(name: str, help_text: str, per_version: list[tuple[str, dict[str, int]]],
                    ) -> Metric:
    """A counter (name ending in _total) by protocol version and procedure."""
    base = name.removesuffix("_total")
    name = base + "_total"
    return family(base, help_text, "counter", [
        sample(name, {"proto": proto, "method": method}, value)
        for proto, counts in per_version for method, value in counts.items()])


CLIENT_LINES = frozenset({"net", "rpc", "proc2", "proc3", "proc4"})


def nfs_families(text: str) -> list[Metric]:
    lines = parse_lines(text, CLIENT_LINES)
    _, udp, tcp, tcp_connect = fixed(lines, "net", 4)
    rpcs, retransmissions, auth_refreshes = fixed(lines, "rpc", 3)
    packets = CounterMetricFamily(
        "node_nfs_packets_total",
        "Total NFSd network packets (sent+received) by protocol type.", labels=["protocol"])
    packets.add_metric(["udp"], udp)
    packets.add_metric(["tcp"], tcp)
    return [
        packets,
        CounterMetricFamily("node_nfs_connections_total", "Total number of NFSd TCP connections.",
                            value=tcp_connect),
        CounterMetricFamily("node_nfs_rpcs_total", "Total number of RPCs performed.",
                            value=rpcs),
        CounterMetricFamily("node_nfs_rpc_retransmissions_total",
                            "Number of RPC transmissions performed.", value=retransmissions),
        CounterMetricFamily("node_nfs_rpc_authentication_refreshes_total",
                            "Number of RPC authentication refreshes performed.",
                            value=auth_refreshes),
        requests_family("node_nfs_requests_total", "Number of NFS procedures invoked.", [
            ("2", procedures(lines, "proc2", V2, minimum=18)),
            ("3", procedures(lines, "proc3", V3, minimum=22)),
            ("4", procedures(lines, "proc4", CLIENT_V4, pad=True)),
        ]),
    ]


class NfsCollector:
    def __init__(self, procfs: Path) -> None:
        self._path = procfs / "net/rpc/nfs"
        self._unchanged: Unchanged[list[Metric]] = Unchanged()

    def collect(self) -> list[Metric]:
        try:
            data = read_file_bytes(self._path)
        except FileNotFoundError:
            return []
        return self._unchanged.get(data, lambda: nfs_families(data.decode(errors="replace")))


def create(context: Context, settings: Any) -> NfsCollector:
    return NfsCollector(context.procfs)
