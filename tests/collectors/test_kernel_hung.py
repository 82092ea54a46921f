from __future__ import annotations

from pathlib import Path

from agent.collectors.kernel_hung import KernelHungCollector
from tests.golden import FIXTURES, assert_golden

PROC = FIXTURES / "kernel_hung" / "proc"


def test_golden() -> None:
    families = KernelHungCollector(PROC).collect()
    assert [(s.name, s.value) for s in families[0].samples] == [
        ("node_kernel_hung_task_detect_count", 7.0)]
    assert_golden(families, "kernel_hung")


def test_no_detector_is_no_data(tmp_path: Path) -> None:
    assert KernelHungCollector(tmp_path).collect() == []


def test_garbage_is_no_data(tmp_path: Path) -> None:
    (tmp_path / "sys/kernel").mkdir(parents=True)
    (tmp_path / "sys/kernel/hung_task_detect_count").write_text("-1\n")
    assert KernelHungCollector(tmp_path).collect() == []
