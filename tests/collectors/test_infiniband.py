from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agent.collectors.infiniband import (
    DeviceError,
    InfinibandCollector,
    parse_rate,
    parse_state,
)
from tests.collectors.peer import assert_matches_peer
from tests.golden import FIXTURES, assert_golden

SYS = FIXTURES / "infiniband" / "sys"


def values(families, name: str) -> dict[tuple[str, str], float]:
    return {(s.labels["device"], s.labels["port"]): s.value for f in families for s in f.samples
            if s.name == name}


def test_golden() -> None:
    families = InfinibandCollector(SYS).collect()
    devices = {s.labels["device"] for f in families for s in f.samples}
    assert devices == {"i40iw0", "mlx4_0", "mlx5_0", "rdma0"}  # broken0 has no fw_ver
    # data counters are per lane: times 4, wrapping at 64 bits as procfs's uint64
    received = values(families, "node_infiniband_port_data_received_bytes_total")
    assert received == {("mlx4_0", "1"): 4631917 * 4, ("mlx4_0", "2"): 0, ("mlx5_0", "1"): 0}
    assert values(families, "node_infiniband_legacy_data_received_bytes_total")[
        ("mlx4_0", "1")] == 4631917 * 4
    # "N/A (no PMA)" counters of an iWARP device are left out, its port state kept
    assert ("i40iw0", "1") not in values(families, "node_infiniband_link_downed_total")
    assert values(families, "node_infiniband_rate_bytes_per_second") == {
        ("i40iw0", "1"): 1.25e9, ("mlx4_0", "1"): 5e9, ("mlx4_0", "2"): 5e9,
        ("mlx5_0", "1"): 312500000, ("rdma0", "1"): 0}
    assert values(families, "node_infiniband_port_transmit_wait_total")[("mlx5_0", "1")] == 16
    # hw_counters: lifespan in whole seconds (12 ms -> 0), counters without counters/
    assert values(families, "node_infiniband_lifespan_seconds") == {("mlx5_0", "1"): 0}
    assert values(families, "node_infiniband_out_of_buffer_drops_total") == {
        ("mlx5_0", "1"): 55, ("rdma0", "1"): 9}
    assert_golden(families, "infiniband")


@pytest.mark.parametrize("text,value", [("4: ACTIVE\n", 4), ("5: LinkUp", 5), (" 1 : DOWN", 1)])
def test_state(text: str, value: int) -> None:
    assert parse_state(text) == value


@pytest.mark.parametrize("text", ["ACTIVE", "4: A: B", "-1: X", ": X"])
def test_state_refused(text: str) -> None:
    with pytest.raises(DeviceError):
        parse_state(text)


@pytest.mark.parametrize("text,value", [("100 Gb/sec (4X EDR)\n", 12500000000),
                                        ("2.5 Gb/sec (1X SDR)", 312500000),
                                        ("14.0625 Gb/sec", 1757812500),
                                        ("0.1 Gb/sec", 12500000)])
def test_rate(text: str, value: int) -> None:
    assert parse_rate(text) == value


def test_rate_refused() -> None:
    with pytest.raises(DeviceError):
        parse_rate("fast")


def test_a_bad_counter_drops_its_device_only(tmp_path: Path) -> None:
    shutil.copytree(SYS, tmp_path / "sys", symlinks=True)
    (tmp_path / "sys/class/infiniband/mlx4_0/ports/2/counters/link_downed").write_text("x\n")
    families = InfinibandCollector(tmp_path / "sys").collect()
    assert {s.labels["device"] for f in families for s in f.samples} == {
        "i40iw0", "mlx5_0", "rdma0"}


def test_no_infiniband_class_is_no_data(tmp_path: Path) -> None:
    assert InfinibandCollector(tmp_path).collect() == []


def test_matches_node_exporter_on_the_fixture(node_exporter, tmp_path: Path) -> None:
    # node_exporter's own fixture devices; the hw_counters and the newer IB counters came
    # after 1.5, and 1.5 failed the whole collector on a device without fw_ver.
    tree = tmp_path / "sys"
    shutil.copytree(SYS, tree, symlinks=True)
    for extra in ("mlx5_0", "rdma0", "broken0"):
        shutil.rmtree(tree / "class/infiniband" / extra)
    assert_matches_peer(node_exporter, "infiniband", [f"--path.sysfs={tree}"],
                        InfinibandCollector(tree).collect(), "node_infiniband_")
