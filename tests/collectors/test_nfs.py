from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric

from agent.collectors.nfs import CLIENT_V4, V2, V3, NfsCollector, nfs_families
from tests.golden import FIXTURES, assert_golden

NFS = FIXTURES / "nfs"


def requests(families: list[Metric]) -> dict[tuple[str, str], float]:
    return {(s.labels["proto"], s.labels["method"]): s.value for f in families
            for s in f.samples if s.name == "node_nfs_requests_total"}


def value(families: list[Metric], name: str, **labels: str) -> float:
    [found] = [s.value for f in families for s in f.samples
               if s.name == name and s.labels == labels]
    return found


def test_modern_kernel_without_nfsv2() -> None:
    families = NfsCollector(NFS / "proc").collect()
    counts = requests(families)
    # Every procedure of every version, NFSv2 as zeros since the kernel has no proc2 line.
    assert len(counts) == len(V2) + len(V3) + len(CLIENT_V4) == 99
    assert {v for (proto, _), v in counts.items() if proto == "2"} == {0}
    assert counts[("3", "GetAttr")] == 1061909262
    assert counts[("3", "Commit")] == 23729
    assert value(families, "node_nfs_packets_total", protocol="tcp") == 1823
    assert value(families, "node_nfs_connections_total") == 12
    assert value(families, "node_nfs_rpc_retransmissions_total") == 5512
    assert_golden(families, "nfs")


def test_old_kernel_pads_nfsv4_procedures() -> None:
    families = NfsCollector(NFS / "proc-old").collect()
    counts = requests(families)
    # proc4 carries 48 operations: the rest of the 59 read as zero.
    assert counts[("4", "Null")] == 98
    assert counts[("4", "Read")] == 51
    assert counts[("4", "Sequence")] == 13 and counts[("4", "LayoutCommit")] == 26
    assert counts[("4", "SecinfoNoName")] == 0 and counts[("4", "Clone")] == 0
    assert counts[("4", "FsidPresent")] == 11
    assert counts[("2", "GetAttr")] == 57
    assert value(families, "node_nfs_rpcs_total") == 1218785755
    assert value(families, "node_nfs_rpc_authentication_refreshes_total") == 1218815394
    assert value(families, "node_nfs_packets_total", protocol="udp") == 70
    assert_golden(families, "nfs_old_kernel")


@pytest.mark.parametrize("text", [
    "net 1 2 3\n",  # too few network values
    "proc3 22 1 2 3\n",  # count does not match the values
    "proc2 3 1 2 3\n",  # fewer procedures than NFSv2 has
    "rpc 1 x 3\n",
    "bogus 1 2\n",
    "net\n",
])
def test_malformed_lines_fail(text: str) -> None:
    with pytest.raises(ValueError, match="NFS"):
        nfs_families(text)


def test_no_client_module_means_no_series(tmp_path: Path) -> None:
    assert NfsCollector(tmp_path).collect() == []
