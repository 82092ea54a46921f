from __future__ import annotations

import pytest
from prometheus_client.metrics_core import Metric

from agent.collectors.common import DeviceFilter
from agent.collectors.interrupts import (
    InterruptsCollector,
    interrupts_families,
    parse_interrupts,
)
from tests.golden import FIXTURES, assert_golden

PROC = FIXTURES / "interrupts" / "proc"


def values(families: list[Metric]) -> dict[tuple[str, ...], float]:
    return {tuple(s.labels.values()): s.value for f in families for s in f.samples}


def test_golden_with_a_cpu_offline() -> None:
    families = InterruptsCollector(PROC).collect()
    assert [f.name for f in families] == ["node_interrupts"]
    found = values(families)
    # CPU1 is offline: the header lists CPU0 CPU2 CPU3, and as in node_exporter the cpu
    # label is the column's position among them.
    assert found[("0", "29", "PCI-MSI", "327680-edge xhci_hcd")] == 11094917
    assert found[("2", "1", "IO-APIC", "1-edge i8042")] == 120
    assert found[("0", "16", "IO-APIC", "16-fasteoi ehci_hcd:usb1, snd_hda_intel:card0")] == 104120
    assert found[("1", "LOC", "Local timer interrupts", "")] == 1709220
    # ERR and MIS have a single total and are left out; zeros are kept by default.
    assert not {name for _, name, _, _ in found} & {"ERR", "MIS"}
    assert found[("0", "SPU", "Spurious interrupts", "")] == 0
    assert len(found) == 13 * 3
    assert_golden(families, "interrupts")


def test_aarch64_names_glued_to_values() -> None:
    parsed = parse_interrupts((PROC / "interrupts_aarch64").read_text())
    assert list(parsed) == ["11", "48", "IPI0", "IPI1", "IPI6"]
    assert parsed["11"].info == "GICv3" and parsed["11"].devices == "27 Level arch_timer"
    assert parsed["IPI0"].values == ("23781", "21402")


@pytest.mark.parametrize(("include", "exclude", "names"), [
    ("^(NMI|LOC);", None, {"NMI", "LOC"}),
    (None, "IO-APIC|PCI-MSI", {"NMI", "LOC", "SPU", "RES", "TLB", "MCP"}),
    # Matched against NAME;INFO;DEVICES, unanchored.
    ("xhci", None, {"29"}),
])
def test_name_filter(include: str | None, exclude: str | None, names: set[str]) -> None:
    families = InterruptsCollector(PROC, include, exclude).collect()
    assert {name for _, name, _, _ in values(families)} == names


def test_zeros_can_be_left_out() -> None:
    families = InterruptsCollector(PROC, include_zeros=False).collect()
    found = values(families)
    assert not [k for k, v in found.items() if v == 0]
    assert not {name for _, name, _, _ in found} & {"8", "30", "SPU"}


def test_bad_value_and_empty_file() -> None:
    parsed = parse_interrupts("  CPU0\n  1:  x  IO-APIC 1-edge i8042\n")
    with pytest.raises(ValueError, match="invalid value x"):
        interrupts_families(parsed, DeviceFilter(None, None), True)
    with pytest.raises(ValueError, match="empty"):
        parse_interrupts("")


def test_matches_node_exporter_on_the_fixture(node_exporter) -> None:  # type: ignore[no-untyped-def]
    from agent.config import Config
    from tests.test_differential import compare

    url = node_exporter("--collector.disable-defaults", "--collector.interrupts",
                        f"--path.procfs={PROC}")
    compare("interrupts", Config.model_validate({"paths": {"procfs": str(PROC)}}), url)
