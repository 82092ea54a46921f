from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric

from agent.collectors.nfsd import NfsdCollector, nfsd_families
from tests.golden import FIXTURES, assert_golden

NFSD = FIXTURES / "nfsd"


def requests(families: list[Metric]) -> dict[tuple[str, str], float]:
    return {(s.labels["proto"], s.labels["method"]): s.value for f in families
            for s in f.samples if s.name == "node_nfsd_requests_total"}


def value(families: list[Metric], name: str, **labels: str) -> float:
    [found] = [s.value for f in families for s in f.samples
               if s.name == name and s.labels == labels]
    return found


def test_node_exporter_fixture() -> None:
    families = NfsdCollector(NFSD / "proc").collect()
    counts = requests(families)
    assert len([k for k in counts if k[0] == "2"]) == 17  # no Null
    assert len([k for k in counts if k[0] == "3"]) == 21
    assert len([k for k in counts if k[0] == "4"]) == 36  # 35 operations and WdelegGetattr
    assert counts[("2", "Lookup")] == 4410 and counts[("2", "FsStat")] == 2
    assert counts[("3", "GetAttr")] == 112 and counts[("3", "FsInfo")] == 2
    assert counts[("4", "Access")] == 1098 and counts[("4", "GetAttr")] == 8179
    assert counts[("4", "PutFH")] == 9609 and counts[("4", "Renew")] == 1236
    assert counts[("4", "SetClientID")] == 3 and counts[("4", "SetClientIDConfirm")] == 3
    assert counts[("4", "WdelegGetattr")] == 15
    assert value(families, "node_nfsd_server_threads") == 8
    assert value(families, "node_nfsd_reply_cache_nocache_total") == 18622
    assert value(families, "node_nfsd_disk_bytes_read_total") == 157286400
    assert value(families, "node_nfsd_read_ahead_cache_size_blocks") == 32
    assert value(families, "node_nfsd_packets_total", proto="tcp") == 917
    assert value(families, "node_nfsd_rpc_errors_total", error="fmt") == 1
    assert value(families, "node_nfsd_rpc_errors_total", error="auth") == 2
    assert value(families, "node_nfsd_server_rpcs_total") == 18628
    assert_golden(families, "nfsd")


def test_older_kernel_with_fewer_fields() -> None:
    families = NfsdCollector(NFSD / "proc-old").collect()
    counts = requests(families)
    assert counts[("4", "RelLockOwner")] == 0  # 39 operations: no RELEASE_LOCKOWNER column
    assert counts[("4", "Write")] == 0 and counts[("4", "PutFH")] == 1062
    assert counts[("4", "WdelegGetattr")] == 0
    assert {v for (proto, _), v in counts.items() if proto == "2"} == {0}
    assert value(families, "node_nfsd_server_threads") == 1024
    assert value(families, "node_nfsd_read_ahead_cache_not_found_total") == 171551
    assert value(families, "node_nfsd_file_handles_stale_total") == 276
    assert_golden(families, "nfsd_old_kernel")


@pytest.mark.parametrize("text", [
    "rc 0 6\n",
    "proc4ops 38 " + " ".join(["0"] * 38) + "\n",
    "proc4 3 1 2 3\n",
    "th 8\n",
    "ra 32 0 0\n",
    "unknown 1\n",
])
def test_malformed_lines_fail(text: str) -> None:
    with pytest.raises(ValueError, match="NFS"):
        nfsd_families(text)


def test_no_server_module_means_no_series(tmp_path: Path) -> None:
    assert NfsdCollector(tmp_path).collect() == []
