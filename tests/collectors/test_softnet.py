from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric

from agent.collectors.softnet import Softnet, SoftnetCollector, parse_softnet
from tests.golden import FIXTURES, assert_golden

PROC = FIXTURES / "softnet" / "proc"


def samples(families: list[Metric], name: str) -> dict[str, float]:
    """cpu label -> value of the sample called name."""
    return {s.labels["cpu"]: s.value for f in families for s in f.samples if s.name == name}


def test_parse_reads_the_first_three_hex_columns() -> None:
    assert parse_softnet((PROC / "net/softnet_stat").read_text()) == [
        Softnet(processed=0x0A3F51C2, dropped=0, times_squeezed=0x12E),
        Softnet(processed=0x0091B7E4, dropped=0x1C, times_squeezed=9),
        Softnet(processed=0xFFFFFFFE, dropped=2, times_squeezed=0),
    ]


@pytest.mark.parametrize("columns", [9, 11, 13])
def test_parse_accepts_older_kernel_widths(columns: int) -> None:
    line = " ".join(["0000002a", "00000001", "00000003"] + ["00000000"] * (columns - 3))
    assert parse_softnet(line + "\n") == [Softnet(42, 1, 3)]


def test_parse_rejects_short_or_non_hex_lines() -> None:
    with pytest.raises(ValueError, match="columns"):
        parse_softnet("00000001 00000000 00000000\n")
    with pytest.raises(ValueError):
        parse_softnet(" ".join(["zz"] * 9) + "\n")


def test_golden() -> None:
    families = SoftnetCollector(PROC).collect()
    assert [(f.name, f.type) for f in families] == [
        ("node_softnet_dropped", "counter"), ("node_softnet_processed", "counter"),
        ("node_softnet_times_squeezed", "counter")]
    assert samples(families, "node_softnet_processed_total") == {
        "0": 171921858, "1": 9549796, "2": 4294967294}
    assert samples(families, "node_softnet_dropped_total") == {"0": 0, "1": 28, "2": 2}
    assert samples(families, "node_softnet_times_squeezed_total") == {"0": 302, "1": 9, "2": 0}
    assert_golden(families, "softnet")


def test_cpu_label_is_the_line_position() -> None:
    # The fixture's third line belongs to CPU 3 (CPU 2 is offline, and the 13th column says
    # 3); node_exporter 1.5 still labels it cpu="2", after its position in the file.
    families = SoftnetCollector(PROC).collect()
    assert list(samples(families, "node_softnet_processed_total")) == ["0", "1", "2"]


def test_missing_file_fails_the_run(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        SoftnetCollector(tmp_path).collect()
