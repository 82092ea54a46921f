"""promtool check metrics on every hardware and kernel collector's fixture exposition (the
golden files the collector tests compare against): no complaint at all."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import require_tool
from tests.golden import GOLDEN

HARDWARE = ("cpu", "cpu_vulnerabilities", "cpufreq", "dmi", "edac", "fibrechannel", "hwmon",
            "infiniband", "kernel_hung", "nvme", "pcidevice", "pcidevice_names",
            "powersupplyclass", "rapl", "schedstat", "selinux", "tapestats", "thermal_zone",
            "watchdog")


@pytest.mark.parametrize("name", HARDWARE)
def test_promtool_has_no_complaint(name: str) -> None:
    exposition = (GOLDEN / f"{name}.prom").read_bytes()
    assert exposition.count(b"# TYPE ") > 0
    result = subprocess.run([require_tool("promtool"), "check", "metrics"], input=exposition,
                            capture_output=True, timeout=60)
    problems = (result.stdout + result.stderr).decode().strip()
    if name == "kernel_hung":  # node_exporter's own name for it draws two naming lints
        problems = "\n".join(line for line in problems.splitlines()
                              if not line.startswith("node_kernel_hung_task_detect_count "))
        assert "node_kernel_hung_task_detect_count counter" in exposition.decode()
        assert not problems, problems
        return
    assert result.returncode == 0 and not problems, problems
