from __future__ import annotations

import shutil
from pathlib import Path

from prometheus_client.metrics_core import Metric

from agent.collectors.cpufreq import CpufreqCollector, cpufreq_families
from tests.collectors.peer import assert_matches_peer
from tests.golden import FIXTURES, assert_golden

SYS = FIXTURES / "cpufreq" / "sys"
CPU = SYS / "devices/system/cpu"


def values(families: list[Metric], name: str) -> dict[tuple[str, ...], float]:
    return {tuple(s.labels.values()): s.value for f in families for s in f.samples
            if s.name == name}


def test_golden() -> None:
    families = CpufreqCollector(SYS).collect()
    assert values(families, "node_cpu_scaling_frequency_hertz") == {
        ("0",): 1.699981e9, ("1",): 1.699981e9, ("2",): 8e6, ("3",): 8e6}
    # cpuinfo_cur_freq is root-only on most kernels: present on cpu0 of the fixture only
    assert values(families, "node_cpu_frequency_hertz") == {("0",): 1.8e9}
    assert values(families, "node_cpu_scaling_governor") == {
        (cpu, governor): float(governor == "powersave")
        for cpu in "0123" for governor in ("performance", "powersave")}
    assert "4" not in {s.labels["cpu"] for f in families for s in f.samples}  # no cpufreq dir
    assert_golden(families, "cpufreq")


def test_unknown_frequency_is_left_out(tmp_path: Path) -> None:
    shutil.copytree(SYS, tmp_path / "sys", symlinks=True)
    (tmp_path / "sys/devices/system/cpu/cpu3/cpufreq/scaling_cur_freq").write_text("<unknown>\n")
    families = CpufreqCollector(tmp_path / "sys").collect()
    assert ("3",) not in values(families, "node_cpu_scaling_frequency_hertz")
    assert ("3",) in values(families, "node_cpu_scaling_frequency_max_hertz")


def test_canned_attributes() -> None:
    families = cpufreq_families({"7": {"scaling_cur_freq": "2400000",
                                       "scaling_governor": "schedutil"}})
    assert values(families, "node_cpu_scaling_frequency_hertz") == {("7",): 2.4e9}
    # no available-governors file: node_exporter reports the empty governor name
    assert values(families, "node_cpu_scaling_governor") == {("7", ""): 0.0}


def test_no_cpu_directory_is_no_data(tmp_path: Path) -> None:
    assert CpufreqCollector(tmp_path).collect() == []


def test_matches_node_exporter_on_the_fixture(node_exporter) -> None:
    # node_cpu_scaling_governor arrived after 1.5.
    assert_matches_peer(node_exporter, "cpufreq", [f"--path.sysfs={SYS}"],
                        CpufreqCollector(SYS).collect(), "node_cpu_",
                        newer=lambda name, labels: name == "node_cpu_scaling_governor")
