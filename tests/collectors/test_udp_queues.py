from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric

from agent.collectors.udp_queues import UdpQueuesCollector, parse_udp_queues
from tests.golden import FIXTURES, assert_golden

PROC = FIXTURES / "udp_queues" / "proc"


def samples(families: list[Metric]) -> dict[tuple[str, str], float]:
    return {(s.labels["ip"], s.labels["queue"]): s.value for f in families for s in f.samples}


def test_parse_sums_the_hex_queues_of_every_socket() -> None:
    assert parse_udp_queues((PROC / "net/udp").read_text()) == (0x340, 0xA00 + 0x1B000)
    assert parse_udp_queues((PROC / "net/udp6").read_text()) == (0xD00, 0x200)


def test_parse_of_a_header_alone_is_zero() -> None:
    header = (PROC / "net/udp").read_text().splitlines()[0]
    assert parse_udp_queues(header + "\n") == (0, 0)


@pytest.mark.parametrize("line", [
    "  1: 00000000:0044 00000000:0000 07 00000000:00000000",
    "  1: 00000000:0044 00000000:0000 07 0000000000000000 00:00000000 00000000 0 0 1 2",
    "  1: 00000000:0044 00000000:0000 07 0000000g:00000000 00:00000000 00000000 0 0 1 2",
])
def test_parse_rejects_malformed_lines(line: str) -> None:
    with pytest.raises(ValueError):
        parse_udp_queues("header\n" + line + "\n")


def test_golden() -> None:
    families = UdpQueuesCollector(PROC).collect()
    assert [(f.name, f.type) for f in families] == [("node_udp_queues", "gauge")]
    assert samples(families) == {
        ("v4", "tx"): 832, ("v4", "rx"): 113152, ("v6", "tx"): 3328, ("v6", "rx"): 512}
    assert_golden(families, "udp_queues")


def test_ipv6_is_optional(tmp_path: Path) -> None:
    (tmp_path / "net").mkdir()
    shutil.copy(PROC / "net" / "udp", tmp_path / "net" / "udp")
    assert samples(UdpQueuesCollector(tmp_path).collect()) == {
        ("v4", "tx"): 832, ("v4", "rx"): 113152}


def test_no_file_at_all_fails_the_run(tmp_path: Path) -> None:
    # node_exporter reports this as "no data": collector_success 0.
    with pytest.raises(FileNotFoundError, match="udp6"):
        UdpQueuesCollector(tmp_path).collect()
