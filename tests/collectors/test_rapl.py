from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import IO

import pytest
from prometheus_client.metrics_core import Metric

from agent.collectors import rapl
from agent.collectors.rapl import RaplCollector, index_and_name
from tests.collectors.peer import assert_matches_peer
from tests.golden import FIXTURES, assert_golden

SYS = FIXTURES / "rapl" / "sys"


def samples(families: list[Metric]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in families for s in f.samples}


def test_index_and_name() -> None:
    counts = {"dram": 1}
    assert index_and_name(counts, "package-1") == (1, "package")
    assert index_and_name(counts, "dram") == (1, "dram")
    assert index_and_name(counts, "core") == (0, "core")


def test_golden() -> None:
    families = RaplCollector(SYS, False).collect()
    path = os.path.join(str(SYS), "class/powercap/intel-rapl:1")
    assert samples(families)[("node_rapl_package_joules_total",
                              (("index", "1"), ("path", path)))] == 155394.240158
    assert {f.type for f in families} == {"counter"}
    # The path label holds where the fixture tree lies: the golden file holds it as SYS.
    for family in families:
        family.samples = [s._replace(labels={k: v.replace(str(SYS), "SYS")
                                             for k, v in s.labels.items()})
                          for s in family.samples]
    assert_golden(families, "rapl")


def test_zone_label() -> None:
    families = RaplCollector(SYS, True).collect()
    assert [f.name for f in families] == ["node_rapl_joules"]
    zones = sorted((s.labels["rapl_zone"], s.labels["index"]) for s in families[0].samples)
    assert zones == [("core", "0"), ("dram", "0"), ("dram", "1"), ("package", "0"),
                     ("package", "1")]


def test_root_only_counters_are_no_data(monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(path: str, mode: str = "r") -> IO[bytes]:
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(rapl, "open", denied, raising=False)
    assert RaplCollector(SYS, False).collect() == []


def test_vanished_counter_skips_that_zone(tmp_path: Path) -> None:
    shutil.copytree(SYS, tmp_path / "sys", symlinks=True)
    (tmp_path / "sys/class/powercap/intel-rapl:0:0/energy_uj").unlink()
    names = {f.name for f in RaplCollector(tmp_path / "sys", False).collect()}
    assert names == {"node_rapl_package_joules", "node_rapl_dram_joules"}


def test_no_powercap_is_no_data(tmp_path: Path) -> None:
    assert RaplCollector(tmp_path, False).collect() == []


def test_matches_node_exporter_on_the_fixture(node_exporter) -> None:
    assert_matches_peer(node_exporter, "rapl", [f"--path.sysfs={SYS}"],
                        RaplCollector(SYS, False).collect(), "node_rapl_")
