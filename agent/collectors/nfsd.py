"""nfsd: node_nfsd_* from /proc/net/rpc/nfsd (the kernel NFS server), as node_exporter's latest
release with prometheus/procfs's parsing rules.

No file (no nfsd module) means no series; a malformed file fails the run, as there. Lines an
older kernel does not print (proc2, proc4ops, wdeleg_getattr) read as zeros; a proc4ops line of
39 operations (kernels before 2.6) has no RELEASE_LOCKOWNER.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from agent.collectors.common import Unchanged, read_file_bytes
from agent.collectors.nfs import V2, V3, fixed, parse_lines, procedures, requests_family

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

# proc4ops columns (NFSv4 operation numbers 0..39), procfs's names.
V4_OPS = ("Op0Unused", "Op1Unused", "Op2Future", "Access", "Close", "Commit", "Create",
          "DelegPurge", "DelegReturn", "GetAttr", "GetFH", "Link", "Lock", "Lockt", "Locku",
          "Lookup", "LookupRoot", "Nverify", "Open", "OpenAttr", "OpenConfirm", "OpenDgrd",
          "PutFH", "PutPubFH", "PutRootFH", "Read", "ReadDir", "ReadLink", "Remove", "Rename",
          "Renew", "RestoreFH", "SaveFH", "SecInfo", "SetAttr", "SetClientID",
          "SetClientIDConfirm", "Verify", "Write", "RelLockOwner")
# The operations node_exporter reports, in its order.
V4_REPORTED = ("Access", "Close", "Commit", "Create", "DelegPurge", "DelegReturn", "GetAttr",
               "GetFH", "Link", "Lock", "Lockt", "Locku", "Lookup", "LookupRoot", "Nverify",
               "Open", "OpenAttr", "OpenConfirm", "OpenDgrd", "PutFH", "Read", "ReadDir",
               "ReadLink", "Remove", "Rename", "Renew", "RestoreFH", "SaveFH", "SecInfo",
               "SetAttr", "SetClientID", "SetClientIDConfirm", "Verify", "Write", "RelLockOwner")

SERVER_LINES = frozenset({"rc", "fh", "io", "th", "ra", "net", "rpc", "proc2", "proc3", "proc4",
                          "proc4ops", "wdeleg_getattr"})


def v4_ops(lines: dict[str, list[int]]) -> dict[str, int]:
    values = lines.get("proc4ops")
    if values is None:
        return dict.fromkeys(V4_OPS, 0)
    count, rest = values[0], values[1:]
    if len(rest) != count or count < 39:
        raise ValueError(f"invalid NFSd proc4ops line: {len(rest)} values, count {count}")
    return dict(zip(V4_OPS, [*rest[:39], rest[39] if count > 39 else 0], strict=True))


def nfsd_families(text: str) -> list[Metric]:
    lines = parse_lines(text, SERVER_LINES)
    hits, misses, nocache = fixed(lines, "rc", 3)
    stale = fixed(lines, "fh", 5)[0]
    read, written = fixed(lines, "io", 2)
    threads = fixed(lines, "th", 2)[0]
    readahead = fixed(lines, "ra", 12)
    _, udp, tcp, tcp_connect = fixed(lines, "net", 4)
    rpcs, _, bad_fmt, bad_auth, bad_client = fixed(lines, "rpc", 5)
    if "proc4" in lines:  # the server's v4 line is exactly NULL and COMPOUND
        fixed(lines, "proc4", 3)
        if lines["proc4"][0] != 2:
            raise ValueError("invalid NFSd proc4 line")
    wdeleg = lines.get("wdeleg_getattr", [0])[0]

    def counter(name: str, help_text: str, value: int) -> CounterMetricFamily:
        return CounterMetricFamily(f"node_nfsd_{name}", help_text, value=value)

    def gauge(name: str, help_text: str, value: int) -> GaugeMetricFamily:
        return GaugeMetricFamily(f"node_nfsd_{name}", help_text, value=value)

    packets = CounterMetricFamily(
        "node_nfsd_packets_total", "Total NFSd network packets (sent+received) by protocol type.",
        labels=["proto"])
    packets.add_metric(["udp"], udp)
    packets.add_metric(["tcp"], tcp)
    errors = CounterMetricFamily("node_nfsd_rpc_errors_total",
                                 "Total number of NFSd RPC errors by error type.",
                                 labels=["error"])
    errors.add_metric(["fmt"], bad_fmt)
    errors.add_metric(["auth"], bad_auth)
    errors.add_metric(["cInt"], bad_client)
    ops = v4_ops(lines)
    v4 = {name: ops[name] for name in V4_REPORTED} | {"WdelegGetattr": wdeleg}
    v2 = procedures(lines, "proc2", V2, minimum=18)
    v3 = procedures(lines, "proc3", V3, minimum=22)
    del v2["Null"], v3["Null"]
    return [
        counter("reply_cache_hits_total",
                "Total number of NFSd Reply Cache hits (client lost server response).", hits),
        counter("reply_cache_misses_total",
                "Total number of NFSd Reply Cache an operation that requires caching "
                "(idempotent).", misses),
        counter("reply_cache_nocache_total",
                "Total number of NFSd Reply Cache non-idempotent operations "
                "(rename/delete/\u2026).", nocache),
        counter("file_handles_stale_total", "Total number of NFSd stale file handles", stale),
        counter("disk_bytes_read_total", "Total NFSd bytes read.", read),
        counter("disk_bytes_written_total", "Total NFSd bytes written.", written),
        gauge("server_threads", "Total number of NFSd kernel threads that are running.",
              threads),
        gauge("read_ahead_cache_size_blocks", "How large the read ahead cache is in blocks.",
              readahead[0]),
        counter("read_ahead_cache_not_found_total",
                "Total number of NFSd read ahead cache not found.", readahead[11]),
        packets,
        counter("connections_total", "Total number of NFSd TCP connections.", tcp_connect),
        errors,
        counter("server_rpcs_total", "Total number of NFSd RPCs.", rpcs),
        requests_family("node_nfsd_requests_total",
                        "Total number NFSd Requests by method and protocol.",
                        [("2", v2), ("3", v3), ("4", v4)]),
    ]


class NfsdCollector:
    def __init__(self, procfs: Path) -> None:
        self._path = procfs / "net/rpc/nfsd"
        self._unchanged: Unchanged[list[Metric]] = Unchanged()

    def collect(self) -> list[Metric]:
        try:
            data = read_file_bytes(self._path)
        except FileNotFoundError:
            return []
        return self._unchanged.get(data, lambda: nfsd_families(data.decode(errors="replace")))


def create(context: Context, settings: Any) -> NfsdCollector:
    return NfsdCollector(context.procfs)
