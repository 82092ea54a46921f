from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agent.collectors.entropy import EntropyCollector
from tests.golden import FIXTURES, assert_golden

PROC = FIXTURES / "entropy" / "proc"


def test_golden() -> None:
    families = EntropyCollector(PROC).collect()
    assert [(f.name, f.type, f.samples[0].value) for f in families] == [
        ("node_entropy_available_bits", "gauge", 3412),
        ("node_entropy_pool_size_bits", "gauge", 4096)]
    assert_golden(families, "entropy")


@pytest.mark.parametrize("missing", ["entropy_avail", "poolsize"])
def test_a_missing_file_fails_the_run(tmp_path: Path, missing: str) -> None:
    shutil.copytree(PROC, tmp_path, dirs_exist_ok=True)
    (tmp_path / "sys/kernel/random" / missing).unlink()
    with pytest.raises(FileNotFoundError):
        EntropyCollector(tmp_path).collect()
