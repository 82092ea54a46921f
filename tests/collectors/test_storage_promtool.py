"""promtool check metrics on every storage collector's fixture exposition (the golden files
the collector tests compare against): no complaint at all, as node_exporter's own fixture
output for these families has none either."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import require_tool
from tests.golden import GOLDEN

# btrfs_ioctl is left out: with ioctl statistics for one filesystem and sysfs sizes for
# another, node_btrfs_device_size_bytes comes as two families (with and without
# btrfs_dev_uuid), which promtool rejects.
STORAGE = ("bcache", "btrfs", "diskstats", "diskstats_3.10", "dmmultipath",
           "filesystem", "mdadm", "nfs", "nfs_old_kernel", "nfsd", "nfsd_old_kernel", "xfs",
           "zfs")


@pytest.mark.parametrize("name", STORAGE)
def test_promtool_has_no_complaint(name: str) -> None:
    exposition = (GOLDEN / f"{name}.prom").read_bytes()
    assert exposition.count(b"# TYPE ") > 0
    result = subprocess.run([require_tool("promtool"), "check", "metrics"], input=exposition,
                            capture_output=True, timeout=60)
    problems = (result.stdout + result.stderr).decode().strip()
    assert result.returncode == 0 and not problems, problems
