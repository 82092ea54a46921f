from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric

from agent.collectors.catalog import VmstatSettings
from agent.collectors.vmstat import VmstatCollector, parse_vmstat
from tests.golden import FIXTURES, assert_golden

PROC = FIXTURES / "vmstat" / "proc"
DEFAULT_FIELDS = VmstatSettings().fields


def values(families: list[Metric]) -> dict[str, float]:
    return {s.name: s.value for f in families for s in f.samples}


def test_parse_reads_every_field() -> None:
    fields = parse_vmstat((PROC / "vmstat").read_text())
    assert len(fields) == 192
    assert list(fields)[:2] == ["nr_free_pages", "nr_free_pages_blocks"]
    assert fields["pgfault"] == 9876543210  # beyond 32 bits
    assert fields["nr_free_pages"] == 1096201


def test_parse_rejects_a_non_numeric_value() -> None:
    with pytest.raises(ValueError):
        parse_vmstat("pgfault 12\npgmajfault lots\n")


def test_golden_with_the_default_fields() -> None:
    families = VmstatCollector(PROC, DEFAULT_FIELDS).collect()
    assert all(f.type == "unknown" for f in families)  # untyped, as node_exporter
    assert values(families) == {
        "node_vmstat_oom_kill": 3, "node_vmstat_pgfault": 9876543210,
        "node_vmstat_pgmajfault": 44321, "node_vmstat_pgpgin": 48210573,
        "node_vmstat_pgpgout": 130976512, "node_vmstat_pswpin": 1822,
        "node_vmstat_pswpout": 9611}
    assert_golden(families, "vmstat")


@pytest.mark.parametrize(("fields", "expected"), [
    # The regex is unanchored at the end: 'pgpg' also takes pgpgin and pgpgout.
    ("^pgpg", ["pgpgin", "pgpgout"]),
    # Searched, not matched at the start: 'fault' finds every *fault* field.
    ("fault", ["numa_hint_faults", "numa_hint_faults_local", "pgfault", "pgmajfault",
               "thp_fault_alloc", "thp_fault_fallback", "thp_fault_fallback_charge",
               "workingset_refault_anon", "workingset_refault_file"]),
    ("^nothing$", []),
])
def test_fields_filter(fields: str, expected: list[str]) -> None:
    families = VmstatCollector(PROC, fields).collect()
    assert [f.name.removeprefix("node_vmstat_") for f in families] == expected


def test_the_default_filter_leaves_out_lookalikes() -> None:
    names = values(VmstatCollector(PROC, DEFAULT_FIELDS).collect())
    for field in ("thp_fault_alloc", "numa_hint_faults", "pgfree", "pgpromote_success"):
        assert f"node_vmstat_{field}" not in names


def test_missing_vmstat_fails_the_run(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        VmstatCollector(tmp_path, DEFAULT_FIELDS).collect()
