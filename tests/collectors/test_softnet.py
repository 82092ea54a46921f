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


def test_parse_reads_every_column_the_kernel_writes() -> None:
    assert parse_softnet((PROC / "net/softnet_stat").read_text()) == [
        Softnet(0x0A3F51C2, 0, 0x12E, 3, 0, 0, 0, 0),
        Softnet(0x0091B7E4, 0x1C, 9, 0, 0x1F42, 0, 5, 1),
        Softnet(0xFFFFFFFE, 2, 0, 1, 0xA1B0, 4, 0, 3),
    ]


@pytest.mark.parametrize(("columns", "expected"), [
    (9, Softnet(42, 1, 3, 8, 0, 0, 0, 0)),
    (10, Softnet(42, 1, 3, 8, 9, 0, 0, 0)),
    (11, Softnet(42, 1, 3, 8, 9, 10, 0, 0)),
    (12, Softnet(42, 1, 3, 8, 9, 10, 0, 0)),
    (13, Softnet(42, 1, 3, 8, 9, 10, 11, 12)),
])
def test_older_kernels_lack_columns_and_cpu_is_the_line(columns: int, expected: Softnet) -> None:
    line = " ".join(f"{v:08x}" for v in [42, 1, 3, 0, 0, 0, 0, 0, 8, 9, 10, 11, 12][:columns])
    assert parse_softnet(line + "\n") == [expected]
    if columns < 13:  # the second line is CPU 1 by position
        assert parse_softnet(f"{line}\n{line}\n")[1].cpu == 1


def test_parse_rejects_short_or_non_hex_lines() -> None:
    with pytest.raises(ValueError, match="columns"):
        parse_softnet("00000001 00000000 00000000\n")
    with pytest.raises(ValueError):
        parse_softnet(" ".join(["zz"] * 9) + "\n")
    with pytest.raises(ValueError, match="32-bit"):
        parse_softnet(" ".join(["100000000"] + ["0"] * 8) + "\n")
    with pytest.raises(ValueError, match="32-bit"):
        parse_softnet(" ".join(["0x1"] + ["0"] * 8) + "\n")


def test_golden() -> None:
    families = SoftnetCollector(PROC).collect()
    assert [(f.name, f.type) for f in families] == [
        ("node_softnet_backlog_len", "gauge"), ("node_softnet_cpu_collision", "counter"),
        ("node_softnet_dropped", "counter"), ("node_softnet_flow_limit_count", "counter"),
        ("node_softnet_processed", "counter"), ("node_softnet_received_rps", "counter"),
        ("node_softnet_times_squeezed", "counter")]
    assert samples(families, "node_softnet_processed_total") == {
        "0": 171921858, "1": 9549796, "3": 4294967294}
    assert samples(families, "node_softnet_received_rps_total") == {
        "0": 0, "1": 8002, "3": 41392}
    assert samples(families, "node_softnet_backlog_len") == {"0": 0, "1": 5, "3": 0}
    assert_golden(families, "softnet")


def test_cpu_label_is_the_cpu_id_column() -> None:
    # The fixture's third line belongs to CPU 3 (CPU 2 is offline, and the 13th column says
    # 3): the latest release labels it cpu="3" (1.5 labelled it by position, cpu="2").
    families = SoftnetCollector(PROC).collect()
    assert list(samples(families, "node_softnet_processed_total")) == ["0", "1", "3"]


def test_missing_file_fails_the_run(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        SoftnetCollector(tmp_path).collect()
