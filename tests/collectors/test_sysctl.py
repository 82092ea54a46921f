from __future__ import annotations

from pathlib import Path

import pytest

from agent.collectors.catalog import SysctlSettings
from agent.collectors.sysctl import SysctlCollector, sanitize
from agent.flags import add_runtime_flags, overrides
from tests.collectors.peer import assert_matches_peer
from tests.golden import FIXTURES, assert_golden, assert_node_exporter

SYSCTL = FIXTURES / "sysctl"
PROC = SYSCTL / "proc"
# node_exporter's end-to-end test flags
E2E = (["fs.file-nr", "fs.file-nr:total,current,max", "kernel.threads-max"],
       ["kernel.seccomp.actions_avail"])


def test_matches_node_exporter_e2e_output() -> None:
    families = SysctlCollector(PROC, *E2E).collect()
    assert_node_exporter(families, SYSCTL / "node_exporter.prom")
    assert_golden(families, "sysctl")


def test_single_values_and_names() -> None:
    families = SysctlCollector(PROC, ["net.ipv4.ip_local_port_range:low,high"],
                               ["kernel.hostname"]).collect()
    found = {(s.name, tuple(s.labels.items())): s.value for f in families for s in f.samples}
    assert found == {
        ("node_sysctl_net_ipv4_ip_local_port_range_low", ()): 32768,
        ("node_sysctl_net_ipv4_ip_local_port_range_high", ()): 60999,
        ("node_sysctl_info", (("name", "kernel.hostname"), ("value", "fixture-host"),
                              ("index", "0"))): 1}
    assert sanitize("a.b-c__.d") == "a_b_c_d"


@pytest.mark.parametrize(("include", "info", "message"), [
    (["fs.missing"], [], "fs.missing"),
    (["vm.bad_value"], [], "not a valid int"),
    (["kernel.threads-max:a,b"], [], "only one value"),
    (["fs.file-nr:a,b"], [], "3 keys but only 2"),
    ([], ["fs.file-nr:a,b,c"], "mapped sysctl string"),
])
def test_errors_name_the_sysctl(include: list[str], info: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SysctlCollector(PROC, include, info).collect()


def test_nothing_included_is_no_data() -> None:
    assert SysctlCollector(PROC, [], []).collect() == []


def test_repeatable_flags_and_bad_names() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    add_runtime_flags(parser)
    args = parser.parse_args(["--collector.sysctl", "--collector.sysctl.include=fs.file-nr",
                              "--collector.sysctl.include=kernel.threads-max",
                              "--collector.sysctl.include-info=kernel.hostname"])
    settings = overrides(args)["collectors"]["sysctl"]
    assert settings == {"enabled": True, "include": ["fs.file-nr", "kernel.threads-max"],
                        "include_info": ["kernel.hostname"]}
    with pytest.raises(ValueError, match="invalid sysctl name"):
        SysctlSettings(include=["../../etc/shadow"])


def test_matches_node_exporter_on_the_fixture(node_exporter, tmp_path: Path) -> None:
    flags = [f"--path.procfs={PROC}", *(f"--collector.sysctl.include={i}" for i in E2E[0]),
             *(f"--collector.sysctl.include-info={i}" for i in E2E[1])]
    assert_matches_peer(node_exporter, "sysctl", flags,
                        SysctlCollector(PROC, *E2E).collect(), "node_sysctl_")
