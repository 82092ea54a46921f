from __future__ import annotations

from pathlib import Path

from agent.collectors.selinux import SelinuxCollector, config_mode
from tests.golden import FIXTURES, assert_golden

SELINUX = FIXTURES / "selinux"


def values(collector: SelinuxCollector) -> dict[str, float]:
    return {s.name: s.value for f in collector.collect() for s in f.samples}


def test_config_mode() -> None:
    assert config_mode("# x\nSELINUX=enforcing\n") == 1
    assert config_mode("SELINUX=permissive\n") == 0
    assert config_mode("SELINUX=disabled\n") == -1
    assert config_mode("") == -1


def test_enabled_permissive_host() -> None:
    collector = SelinuxCollector(SELINUX / "sys", SELINUX / "root")
    assert values(collector) == {"node_selinux_enabled": 1, "node_selinux_config_mode": 1,
                                 "node_selinux_current_mode": 0}
    assert_golden(collector.collect(), "selinux")


def test_host_without_selinux_reports_disabled(tmp_path: Path) -> None:
    assert values(SelinuxCollector(tmp_path, tmp_path)) == {"node_selinux_enabled": 0}
