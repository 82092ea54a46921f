from __future__ import annotations

from pathlib import Path

import pytest

from agent.collectors.cpu_vulnerabilities import CpuVulnerabilitiesCollector, parse_vulnerability
from tests.golden import FIXTURES, assert_golden

SYS = FIXTURES / "cpu_vulnerabilities" / "sys"


def test_golden() -> None:
    families = CpuVulnerabilitiesCollector(SYS).collect()
    info = {s.labels["codename"]: (s.labels["state"], s.labels["mitigation"])
            for s in families[0].samples}
    assert info["itlb_multihit"] == ("not affected", "")
    assert info["srbds"] == ("vulnerable", "")
    assert info["spectre_v2"] == ("mitigation", "Retpolines, IBPB: conditional, STIBP: "
                                  "always-on, RSB filling, PBRSB-eIBRS: Not affected")
    # text in no known form: unknown, the whole text kept
    assert info["l1tf"] == ("unknown", "KVM: Mitigation: VMX disabled")
    assert {s.value for s in families[0].samples} == {1.0}
    assert_golden(families, "cpu_vulnerabilities")


@pytest.mark.parametrize("text,parsed", [
    ("Not affected\n", ("not affected", "")),
    ("Vulnerable: Clear CPU buffers attempted, no microcode; SMT vulnerable",
     ("vulnerable", "Clear CPU buffers attempted, no microcode; SMT vulnerable")),
    ("Mitigation: PTI", ("mitigation", "PTI")),
    ("mitigation:   Enhanced  IBRS\n", ("mitigation", "Enhanced IBRS")),
    ("Unknown: Dependent on hypervisor status", ("unknown", "Dependent on hypervisor status")),
    ("Processor vulnerable", ("unknown", "Processor vulnerable")),
    ("", ("unknown", ""))])
def test_parse(text: str, parsed: tuple[str, str]) -> None:
    assert parse_vulnerability(text) == parsed


def test_no_vulnerabilities_directory_is_no_data(tmp_path: Path) -> None:
    assert CpuVulnerabilitiesCollector(tmp_path).collect() == []
