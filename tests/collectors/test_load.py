from __future__ import annotations

from pathlib import Path

import pytest

from agent.collectors.load import LoadCollector, parse_loadavg
from tests.golden import FIXTURES, assert_golden

PROC = FIXTURES / "load" / "proc"


def test_parse_loadavg_takes_the_three_averages() -> None:
    assert parse_loadavg((PROC / "loadavg").read_text()) == (1.37, 0.94, 0.71)


def test_parse_loadavg_rejects_truncated_content() -> None:
    with pytest.raises(ValueError, match="loadavg"):
        parse_loadavg("0.10 0.20\n")


def test_golden() -> None:
    families = LoadCollector(PROC).collect()
    assert [(f.name, f.type, f.samples[0].value) for f in families] == [
        ("node_load1", "gauge", 1.37), ("node_load5", "gauge", 0.94),
        ("node_load15", "gauge", 0.71)]
    assert_golden(families, "load")


def test_missing_loadavg_fails_the_run(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        LoadCollector(tmp_path).collect()
