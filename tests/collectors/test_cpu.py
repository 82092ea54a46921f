from __future__ import annotations

from pathlib import Path

from prometheus_client.metrics_core import Metric

from agent.collectors.catalog import CpuSettings
from agent.collectors.cpu import CpuCollector, parse_cpu_list, parse_cpuinfo
from tests.collectors.peer import assert_matches_peer
from tests.golden import FIXTURES, assert_golden

PROC = FIXTURES / "cpu" / "proc"
SYS = FIXTURES / "cpu" / "sys"


def values(families: list[Metric], name: str) -> dict[tuple[str, ...], float]:
    return {tuple(v for _, v in sorted(s.labels.items())): s.value
            for f in families for s in f.samples if s.name == name}


def test_parse_cpu_list() -> None:
    assert parse_cpu_list("1,3-5,9\n") == [1, 3, 4, 5, 9]
    assert parse_cpu_list("\n") == []


def test_parse_cpuinfo() -> None:
    processors = parse_cpuinfo((PROC / "cpuinfo").read_text())
    assert len(processors) == 8
    assert processors[2]["physical id"] == "1" and processors[2]["cpu MHz"] == "801.998"


def test_golden_with_info() -> None:
    families = CpuCollector(PROC, SYS, info=True, flags_include="^(aes|avx.*)$",
                            bugs_include="spectre").collect()
    assert values(families, "node_cpu_isolated") == {(c,): 1 for c in "13459"}
    assert values(families, "node_cpu_core_throttles_total") == {
        ("0", "0"): 5, ("1", "0"): 0, ("0", "1"): 0, ("1", "1"): 9}
    assert values(families, "node_cpu_package_throttles_total") == {("0",): 30, ("1",): 6}
    assert values(families, "node_cpu_online")[("7",)] == 0
    assert sorted(values(families, "node_cpu_flag_info")) == [("aes",), ("avx",), ("avx2",)]
    assert sorted(values(families, "node_cpu_bug_info")) == [("spectre_v1",), ("spectre_v2",)]
    info = [s.labels for f in families for s in f.samples if s.name == "node_cpu_info"]
    assert info[0] == {"package": "0", "core": "0", "cpu": "0", "vendor": "GenuineIntel",
                       "family": "6", "model": "142",
                       "model_name": "Intel(R) Core(TM) i7-8650U CPU @ 1.90GHz",
                       "microcode": "0xb4", "stepping": "10", "cachesize": "8192 KB"}
    assert_golden(families, "cpu")


def test_guest_can_be_turned_off() -> None:
    names = {f.name for f in CpuCollector(PROC, SYS, guest=False).collect()}
    assert "node_cpu_guest_seconds" not in names and "node_cpu_seconds" in names
    assert "node_cpu_info" not in names  # info is opt-in


def test_include_flags_turn_info_on() -> None:
    assert CpuSettings(info_flags_include="aes").info_flags_include == "aes"
    names = {f.name for f in CpuCollector(PROC, SYS, bugs_include="mds").collect()}
    assert {"node_cpu_info", "node_cpu_bug_info"} <= names


def test_no_topology_no_throttles(tmp_path: Path) -> None:
    names = {f.name for f in CpuCollector(PROC, tmp_path).collect()}
    assert names == {"node_cpu_seconds", "node_cpu_guest_seconds"}


def test_matches_node_exporter_on_the_fixture(node_exporter) -> None:
    # node_cpu_online arrived after 1.5.
    families = CpuCollector(PROC, SYS, info=True, flags_include="^avx",
                            bugs_include="spectre").collect()
    assert_matches_peer(
        node_exporter, "cpu",
        [f"--path.procfs={PROC}", f"--path.sysfs={SYS}", "--collector.cpu.info",
         "--collector.cpu.info.flags-include=^avx", "--collector.cpu.info.bugs-include=spectre"],
        families, "node_cpu_",
        newer=lambda name, labels: name == "node_cpu_online")
