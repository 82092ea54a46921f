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


def _stat_tree(tmp_path: Path, cpu0: str) -> Path:
    proc = tmp_path / "proc"
    proc.mkdir(exist_ok=True)
    (proc / "stat").write_text(f"cpu  1 1 1 1 1 1 1 1 1 1\ncpu0 {cpu0}\n")
    return proc


def test_counters_never_go_back_unless_idle_jumps_back(tmp_path: Path) -> None:
    collector = CpuCollector(_stat_tree(tmp_path, "500 100 200 100000 50 0 0 0 7 0"))
    first = collector.collect()
    _stat_tree(tmp_path, "499 101 200 100000 50 0 0 0 6 0")  # user and guest back a tick
    kept = collector.collect()
    assert values(kept, "node_cpu_seconds_total")[("0", "user")] == 5.0
    assert values(kept, "node_cpu_seconds_total")[("0", "nice")] == 1.01
    assert values(kept, "node_cpu_guest_seconds_total")[("0", "user")] == 0.07
    assert values(first, "node_cpu_seconds_total")[("0", "nice")] == 1.0  # not mutated
    _stat_tree(tmp_path, "3 0 2 100 0 0 0 0 0 0")  # hot-plugged: idle far back
    restarted = collector.collect()
    assert values(restarted, "node_cpu_seconds_total")[("0", "idle")] == 1.0
    assert values(restarted, "node_cpu_seconds_total")[("0", "user")] == 0.03
    assert values(restarted, "node_cpu_guest_seconds_total")[("0", "user")] == 0.0


def test_unchanged_times_give_the_same_families(tmp_path: Path) -> None:
    collector = CpuCollector(_stat_tree(tmp_path, "5 0 2 100 0 0 0 0 0 0"))
    first = collector.collect()
    again = collector.collect()
    assert [f is g for f, g in zip(first, again, strict=True)] == [True, True]
    _stat_tree(tmp_path, "5 0 2 101 0 0 0 0 0 0")
    moved = collector.collect()
    assert moved[0] is not first[0] and moved[1] is first[1]
    assert values(moved, "node_cpu_seconds_total")[("0", "idle")] == 1.01


def test_per_cpu_files_that_appear_or_change_show_at_once(tmp_path: Path) -> None:
    cpus = tmp_path / "sys" / "devices" / "system" / "cpu"
    (cpus / "cpu0" / "topology").mkdir(parents=True)
    (cpus / "cpu0" / "topology" / "physical_package_id").write_text("0\n")
    (cpus / "cpu0" / "topology" / "core_id").write_text("0\n")
    collector = CpuCollector(_stat_tree(tmp_path, "5 0 2 100 0 0 0 0 0 0"), tmp_path / "sys")
    names = {f.name for f in collector.collect()}
    assert "node_cpu_core_throttles" not in names and "node_cpu_online" not in names
    (cpus / "cpu0" / "thermal_throttle").mkdir()
    (cpus / "cpu0" / "thermal_throttle" / "core_throttle_count").write_text("4\n")
    (cpus / "cpu0" / "online").write_text("1\n")
    families = collector.collect()
    assert values(families, "node_cpu_core_throttles_total") == {("0", "0"): 4}
    assert values(families, "node_cpu_online") == {("0",): 1}
    (cpus / "cpu0" / "thermal_throttle" / "core_throttle_count").write_text("5\n")
    (cpus / "cpu0" / "online").write_text("0\n")
    families = collector.collect()
    assert values(families, "node_cpu_core_throttles_total") == {("0", "0"): 5}
    assert values(families, "node_cpu_online") == {("0",): 0}


def test_on_sysfs_a_missing_file_is_tried_again_when_cpus_go_online(tmp_path: Path) -> None:
    cpus = tmp_path / "sys" / "devices" / "system" / "cpu"
    (cpus / "cpu1" / "topology").mkdir(parents=True)
    (cpus / "cpu1" / "topology" / "physical_package_id").write_text("0\n")
    (cpus / "cpu1" / "topology" / "core_id").write_text("1\n")
    (cpus / "online").write_text("0\n")
    collector = CpuCollector(_stat_tree(tmp_path, "5 0 2 100 0 0 0 0 0 0"), tmp_path / "sys")
    assert collector._sysfs is not None
    collector._sysfs._kernel = True  # as on sysfs: missing files remembered
    assert "node_cpu_core_throttles" not in {f.name for f in collector.collect()}
    # cpu1 goes online: the kernel adds its thermal_throttle files.
    (cpus / "cpu1" / "thermal_throttle").mkdir()
    (cpus / "cpu1" / "thermal_throttle" / "core_throttle_count").write_text("3\n")
    (cpus / "online").write_text("0-1\n")
    assert values(collector.collect(), "node_cpu_core_throttles_total") == {("1", "0"): 3}
    # A new CPU's directory: its files are read at once.
    (cpus / "cpu2" / "topology").mkdir(parents=True)
    (cpus / "cpu2" / "topology" / "physical_package_id").write_text("0\n")
    (cpus / "cpu2" / "topology" / "core_id").write_text("2\n")
    (cpus / "cpu2" / "thermal_throttle").mkdir()
    (cpus / "cpu2" / "thermal_throttle" / "core_throttle_count").write_text("8\n")
    assert values(collector.collect(), "node_cpu_core_throttles_total") == {
        ("1", "0"): 3, ("2", "0"): 8}
