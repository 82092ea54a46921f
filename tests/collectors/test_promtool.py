"""promtool check metrics on every collector's golden exposition (the files the collector
tests compare against): no complaint, but for the lints node_exporter's (or process-exporter's)
own names draw, which are listed here per file, and each of which must still be drawn."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.golden import GOLDEN

SNAKE_CASE = "metric names should be written in 'snake_case' not 'camelCase'"
# Lints by golden file: the text promtool prints after the metric name.
EXPECTED_LINTS = {
    "entropy": {'use base unit "bytes" instead of "bits"'},
    "kernel_hung": {'counter metrics should have "_total" suffix',
                    'non-histogram and non-summary metrics should not have "_count" suffix'},
    "meminfo": {SNAKE_CASE},
    "meminfo_numa": {SNAKE_CASE},
    "netclass_netlink": {'non-counter metrics should not have "_total" suffix'},  # stats
    "netstat": {SNAKE_CASE},
    "process_groups": {'counter metrics should have "_total" suffix',
                       'non-histogram and non-summary metrics should not have "_count" suffix'},
    "systemd": {'non-counter metrics should not have "_total" suffix'},
    "wifi": {'use base unit "bytes" instead of "bits"'},
}
# btrfs_ioctl is left out: with ioctl statistics for one filesystem and sysfs sizes for
# another, node_btrfs_device_size_bytes comes as two families (with and without
# btrfs_dev_uuid), which promtool rejects.
LEFT_OUT = {"btrfs_ioctl"}
GOLDEN_FILES = sorted(p for p in GOLDEN.glob("*.prom") if p.stem not in LEFT_OUT)


def test_every_collector_has_golden_files() -> None:
    assert len(GOLDEN_FILES) > 50
    assert set(EXPECTED_LINTS) | LEFT_OUT <= {p.stem for p in GOLDEN.glob("*.prom")}


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda p: p.stem)
def test_promtool_has_no_unexpected_complaint(path: Path) -> None:
    exposition = path.read_bytes()
    assert exposition.count(b"# TYPE ") > 0
    result = subprocess.run([require_tool("promtool"), "check", "metrics"], input=exposition,
                            capture_output=True, timeout=60)
    problems = (result.stdout + result.stderr).decode().strip()
    lints = {line.split(" ", 1)[1] for line in problems.splitlines() if " " in line}
    expected = EXPECTED_LINTS.get(path.stem, set())
    assert lints == expected, problems
    # 3 is promtool's exit for lint problems alone; 1 would be a format error
    assert result.returncode == (3 if expected else 0), problems
