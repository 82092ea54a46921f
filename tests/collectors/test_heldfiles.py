"""Kernel files kept open between reads: every read gives what a new open gives (values that
moved, a file of several pages, a renamed or removed network device), and files that are not
kernel-generated are never held (a replaced fixture file is read as it is now)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from agent.collectors import heldfiles
from agent.collectors.heldfiles import HeldFile
from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parents[2]


def test_a_held_kernel_file_gives_each_read_the_current_value() -> None:
    counter = HeldFile("/sys/class/net/lo/statistics/tx_packets")
    before = heldfiles.available()
    first = int(counter.read())
    assert heldfiles.available() == before - 1  # held from the first read on
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for _ in range(3):
            sender.sendto(b"x", ("127.0.0.1", 9))
    assert int(counter.read()) >= first + 3
    counter.close()
    assert heldfiles.available() == before


def test_a_plain_file_is_read_by_its_path_each_time(tmp_path: Path) -> None:
    path = tmp_path / "stat"
    path.write_bytes(b"one\n")
    held = HeldFile(path)
    before = heldfiles.available()
    assert held.read() == b"one\n"
    assert heldfiles.available() == before
    replacement = tmp_path / "new"
    replacement.write_bytes(b"two\n")
    os.replace(replacement, path)  # a new inode under the same name
    assert held.read() == b"two\n"
    path.unlink()
    with pytest.raises(FileNotFoundError):
        held.read()


def test_a_held_sysfs_attribute_reads_once_with_its_size() -> None:
    held = HeldFile("/sys/class/net/lo/mtu", size=2)
    assert held.read() == held.read() == Path("/sys/class/net/lo/mtu").read_bytes()[:2]


NAMESPACE_SCRIPT = r"""
import json, os, subprocess, sys, tempfile
sys.path.insert(0, sys.argv[1])
def run(*args):
    subprocess.run(args, check=True)
for conf in ("all", "default"):
    with open(f"/proc/sys/net/ipv6/conf/{conf}/disable_ipv6", "w") as f:
        f.write("1")
run("ip", "link", "add", "v0", "mtu", "1400", "type", "veth", "peer", "name", "v1")
run("ip", "link", "add", "w0", "mtu", "1300", "type", "veth", "peer", "name", "w1")
sysfs = tempfile.mkdtemp()
run("mount", "-t", "sysfs", "sysfs", sysfs)  # this namespace's /sys/class/net
from pathlib import Path
from agent.collectors.heldfiles import HeldFile
from agent.collectors.netclass import NetclassCollector
from agent.exposition.formats import TEXT, encode
held = NetclassCollector(Path(sysfs), "^$", False)
def both():
    fresh = NetclassCollector(Path(sysfs), "^$", False)
    return [encode(held.collect(), TEXT).decode(), encode(fresh.collect(), TEXT).decode()]
out = {"first": both()}
# v0 and w0 swap names: each name now means the other device.
run("ip", "link", "set", "v0", "name", "tmp0")
run("ip", "link", "set", "w0", "name", "v0")
run("ip", "link", "set", "tmp0", "name", "w0")
out["swapped"] = both()
run("ip", "link", "del", "w0")
run("ip", "link", "set", "w1", "mtu", "1200")  # v1 went with its peer
out["removed"] = both()
# A procfs entry removed and made again (as a module's, unloaded and loaded again): the
# held descriptor of the old one answers EIO for good.
run("ip", "link", "add", "s0", "type", "veth", "peer", "name", "s1")
snmp6 = HeldFile("/proc/net/dev_snmp6/s0")
before = snmp6.read().decode()
run("ip", "link", "del", "s0")
run("ip", "link", "add", "s0", "type", "veth", "peer", "name", "s1")
try:
    again = snmp6.read().decode()
except OSError as exc:
    again = repr(exc)
out["recreated"] = [before, again, open("/proc/net/dev_snmp6/s0").read()]
# /proc/net/dev of many devices is answered in page-sized pieces.
for i in range(40):
    run("ip", "link", "add", f"p{i}", "type", "veth", "peer", "name", f"q{i}")
dev = HeldFile("/proc/net/dev")
out["dev"] = [dev.read().decode(), dev.read().decode(), open("/proc/net/dev").read()]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def namespace_outputs() -> dict[str, list[str]]:
    require_tool("ip")
    done = subprocess.run([require_tool("unshare"), "-n", "-m", sys.executable, "-c",
                           NAMESPACE_SCRIPT, str(ROOT)],
                          capture_output=True, text=True, timeout=60)
    if done.returncode and "Operation not permitted" in done.stderr:
        pytest.skip("no permission to create network and mount namespaces")
    assert done.returncode == 0, done.stderr
    outputs: dict[str, list[str]] = json.loads(done.stdout)
    return outputs


@pytest.mark.parametrize("step", ["first", "swapped", "removed"])
def test_netclass_holding_its_files_reads_what_a_new_collector_reads(
        namespace_outputs: dict[str, list[str]], step: str) -> None:
    held, fresh = namespace_outputs[step]
    assert held == fresh
    assert 'node_network_mtu_bytes{device="v0"}' in held


def test_netclass_follows_renamed_devices(namespace_outputs: dict[str, list[str]]) -> None:
    assert 'node_network_mtu_bytes{device="v0"} 1400' in namespace_outputs["first"][0]
    assert 'node_network_mtu_bytes{device="v0"} 1300' in namespace_outputs["swapped"][0]
    removed = namespace_outputs["removed"][0]
    assert 'device="w0"' not in removed
    assert 'device="v1"' not in removed
    assert 'node_network_mtu_bytes{device="w1"} 1200' in removed


def test_a_held_file_of_several_pages_is_read_whole(
        namespace_outputs: dict[str, list[str]]) -> None:
    first, second, fresh = namespace_outputs["dev"]
    assert len(fresh) > 2 * 4096
    assert first == second == fresh


def test_a_held_procfs_entry_made_again_is_read_anew(
        namespace_outputs: dict[str, list[str]]) -> None:
    before, held, fresh = namespace_outputs["recreated"]
    assert held == fresh
    assert before.split("ifIndex")[1].split()[0] != fresh.split("ifIndex")[1].split()[0]


def test_an_owner_holds_no_more_than_its_share() -> None:
    files = heldfiles.HeldFiles(share=heldfiles.Share(limit=2))
    before = heldfiles.available()
    paths = ["/proc/loadavg", "/proc/uptime", "/proc/version", "/proc/meminfo"]
    for path in paths:
        assert files.read(path)
    assert files.share.held == 2 and files.share.available() == 0
    assert heldfiles.available() == before - 2
    assert files.read("/proc/version") == Path("/proc/version").read_bytes()  # by its path
    files.discard("/proc/loadavg")
    assert files.share.held == 1 and heldfiles.available() == before - 1
    files.discard("/proc/uptime")
    assert heldfiles.available() == before


def test_shares_are_capped_by_what_the_process_may_still_hold() -> None:
    share = heldfiles.Share(limit=heldfiles.HELD_LIMIT + 10)
    assert share.available() == heldfiles.available()
