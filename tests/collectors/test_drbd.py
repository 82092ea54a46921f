from __future__ import annotations

from pathlib import Path

import pytest

from agent.collectors.drbd import DrbdCollector, drbd_families
from tests.collectors.peer import assert_matches_peer
from tests.golden import FIXTURES, assert_golden, assert_node_exporter

DRBD = FIXTURES / "drbd"


def test_matches_node_exporter_e2e_output() -> None:
    assert_node_exporter(DrbdCollector(DRBD / "proc-e2e").collect(),
                         DRBD / "node_exporter.prom")


def test_standalone_and_unconfigured_devices() -> None:
    families = DrbdCollector(DRBD / "proc").collect()
    found = {(s.name, tuple(s.labels.values())): s.value for f in families for s in f.samples}
    assert found[("node_drbd_connected", ("drbd2",))] == 0
    assert found[("node_drbd_connected", ("drbd3",))] == 0
    assert found[("node_drbd_node_role_is_primary", ("drbd2", "local"))] == 0
    assert found[("node_drbd_out_of_sync_bytes", ("drbd2",))] == 4096 * 1024
    assert_golden(families, "drbd")


def test_bad_value() -> None:
    with pytest.raises(ValueError, match="ns:x"):
        drbd_families(" 0: cs:Connected ns:x\n")


def test_no_drbd_is_no_data(tmp_path: Path) -> None:
    assert DrbdCollector(tmp_path).collect() == []


def test_matches_node_exporter_on_the_fixture(node_exporter) -> None:
    assert_matches_peer(node_exporter, "drbd", [f"--path.procfs={DRBD / 'proc'}"],
                        DrbdCollector(DRBD / "proc").collect(), "node_drbd_")
