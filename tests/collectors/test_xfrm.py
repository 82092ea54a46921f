from __future__ import annotations

from pathlib import Path

import pytest

from agent.collectors.xfrm import XfrmCollector, parse_xfrm_stat
from tests.golden import FIXTURES, assert_golden, assert_node_exporter

XFRM = FIXTURES / "xfrm"


def test_matches_node_exporter_e2e_output() -> None:
    families = XfrmCollector(XFRM / "proc").collect()
    assert_node_exporter(families, XFRM / "node_exporter.prom")
    assert_golden(families, "xfrm")


def test_newer_kernel_counters_are_left_out_and_missing_ones_are_zero() -> None:
    values = parse_xfrm_stat((XFRM / "proc-newer/net/xfrm_stat").read_text())
    assert "XfrmOutStateDirError" not in values
    assert values["XfrmAcquireError"] == 0 and values["XfrmFwdHdrError"] == 6654
    with pytest.raises(ValueError, match="invalid line"):
        parse_xfrm_stat("XfrmInError 1 2\n")


def test_no_xfrm_stat_is_no_data(tmp_path: Path) -> None:
    assert XfrmCollector(tmp_path).collect() == []

