from __future__ import annotations

import glob
import shutil
from pathlib import Path

from prometheus_client.metrics_core import Metric

from agent.collectors.common import numbered
from agent.collectors.edac import EdacCollector
from tests.collectors.peer import assert_matches_peer
from tests.golden import FIXTURES, assert_golden

SYS = FIXTURES / "edac" / "sys"


def values(families: list[Metric], name: str) -> dict[tuple[str, ...], float]:
    return {tuple(s.labels.values()): s.value for f in families for s in f.samples
            if s.name == name}


def test_golden() -> None:
    families = EdacCollector(SYS).collect()
    assert values(families, "node_edac_correctable_errors_total") == {("0",): 1, ("1",): 12}
    assert values(families, "node_edac_csrow_correctable_errors_total") == {
        ("0", "unknown"): 2, ("0", "0"): 3, ("0", "1"): 0, ("1", "unknown"): 0}
    # mc1 has dimm* directories only: its totals and "unknown" rows, no csrow series
    assert values(families, "node_edac_csrow_uncorrectable_errors_total")[("1", "unknown")] == 0
    assert_golden(families, "edac")


def test_unreadable_counter_is_left_out(tmp_path: Path) -> None:
    shutil.copytree(SYS, tmp_path / "sys", symlinks=True)
    (tmp_path / "sys/devices/system/edac/mc/mc0/ce_count").unlink()
    families = EdacCollector(tmp_path / "sys").collect()
    assert values(families, "node_edac_correctable_errors_total") == {("1",): 12}
    assert values(families, "node_edac_uncorrectable_errors_total")[("0",)] == 5


def test_no_edac_is_no_data(tmp_path: Path) -> None:
    assert EdacCollector(tmp_path).collect() == []


def test_matches_node_exporter_on_the_fixture(node_exporter) -> None:
    assert_matches_peer(node_exporter, "edac", [f"--path.sysfs={SYS}"],
                        EdacCollector(SYS).collect(), "node_edac_")


def test_numbered_lists_what_glob_finds(tmp_path: Path) -> None:
    for name in ("mc0", "mc10", "mc2x", "mc", "mcx1", ".mc3", "mc\u0663", "xmc1"):
        (tmp_path / name).mkdir()
    (tmp_path / "mc7").write_text("a file matches as well\n")
    found = numbered(str(tmp_path), "mc")
    assert [f"{tmp_path}/{n}" for n in found] == sorted(glob.glob(f"{tmp_path}/mc[0-9]*"))
    assert found == ["mc0", "mc10", "mc2x", "mc7"]
    assert numbered(str(tmp_path / "missing"), "mc") == []
    assert numbered(str(tmp_path / "mc7"), "mc") == []
