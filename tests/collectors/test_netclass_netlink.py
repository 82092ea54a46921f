from __future__ import annotations

import json
import re
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.collectors import netclass_netlink as nl
from agent.collectors import rtnetlink
from tests.conftest import require_tool
from tests.golden import assert_golden

ROOT = Path(__file__).resolve().parents[2]


def attr(kind: int, value: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(value), kind) + value.ljust((len(value) + 3) & ~3, b"\0")


def u32(value: int) -> bytes:
    return struct.pack("=I", value)


def link_message(index: int, name: str, flags: int, kind: int = 1, *attrs: bytes) -> bytes:
    return rtnetlink.IFINFOMSG.pack(socket.AF_UNSPEC, kind, index, flags, 0) + attr(
        rtnetlink.IFLA_IFNAME, name.encode() + b"\0") + b"".join(attrs)


ETH0 = link_message(
    2, "eth0", 0x1003, 1,
    attr(rtnetlink.IFLA_ADDRESS, bytes.fromhex("3cecef418b20")),
    attr(rtnetlink.IFLA_BROADCAST, b"\xff" * 6),
    attr(rtnetlink.IFLA_MTU, u32(9000)), attr(nl.IFLA_TXQLEN, u32(1000)),
    attr(nl.IFLA_OPERSTATE, b"\x06"), attr(nl.IFLA_LINKMODE, b"\x00"),
    attr(nl.IFLA_GROUP, u32(0)), attr(nl.IFLA_IFALIAS, b"uplink\0"),
    attr(nl.IFLA_CARRIER, b"\x01"), attr(nl.IFLA_CARRIER_CHANGES, u32(7)),
    attr(nl.IFLA_CARRIER_UP_COUNT, u32(4)), attr(nl.IFLA_CARRIER_DOWN_COUNT, u32(3)),
    attr(nl.IFLA_STATS64, struct.pack("=24Q", *range(1, 25))))
# A veth whose peer is index 9, an older kernel's 23 counters, and no carrier counts.
VETH = link_message(
    8, "veth0", 0x1002, 1,
    attr(rtnetlink.IFLA_ADDRESS, bytes.fromhex("8a29b7492417")),
    attr(rtnetlink.IFLA_BROADCAST, b"\xff" * 6), attr(rtnetlink.IFLA_LINK, u32(9)),
    attr(rtnetlink.IFLA_MTU, u32(1500)), attr(nl.IFLA_OPERSTATE, b"\x02"),
    attr(nl.IFLA_STATS64, struct.pack("=23Q", *[5] * 23)))


def genl_link_mode(name: str, speed: int, duplex: int) -> bytes:
    header = attr(nl.ETHTOOL_A_HEADER_DEV_NAME, name.encode() + b"\0")
    return rtnetlink.GENLMSGHDR.pack(nl.ETHTOOL_MSG_LINKMODES_GET + 1, 1, 0) + attr(
        nl.ETHTOOL_A_LINKMODES_HEADER | rtnetlink.NLA_F_NESTED, header) + attr(
        nl.ETHTOOL_A_LINKMODES_SPEED, u32(speed)) + attr(
        nl.ETHTOOL_A_LINKMODES_DUPLEX, bytes([duplex]))


def test_parse_link() -> None:
    eth0 = nl.parse_link(ETH0)
    assert eth0 is not None
    assert (eth0.index, eth0.name, eth0.address, eth0.alias, eth0.mtu, eth0.operstate) == (
        2, "eth0", "3c:ec:ef:41:8b:20", "uplink", 9000, 6)
    assert eth0.numbers == {"transmit_queue_length": 1000, "link_mode": 0, "net_dev_group": 0,
                            "carrier": 1, "carrier_changes_total": 7,
                            "carrier_up_changes_total": 4, "carrier_down_changes_total": 3}
    assert eth0.stats == list(range(1, 25))
    veth = nl.parse_link(VETH)
    assert veth is not None and veth.link == 9 and veth.stats == [5] * 23 + [0]
    assert nl.parse_link(b"\0" * 4) is None


def test_parse_link_mode() -> None:
    mode = nl.parse_link_mode(genl_link_mode("eth0", 10000, 1))
    assert (mode.name, mode.speed, mode.duplex) == ("eth0", 10000, 1)


def test_golden() -> None:
    links = [nl.parse_link(ETH0), nl.parse_link(VETH)]
    modes = [nl.parse_link_mode(genl_link_mode("eth0", 10000, 1)),
             nl.parse_link_mode(genl_link_mode("veth0", 0xFFFFFFFF, 255))]
    sysfs = {"eth0": {"addr_assign_type": "0", "dev_id": "0x0", "name_assign_type": "4"}}
    families = nl.netlink_families([link for link in links if link], modes, sysfs, True)
    values = {(s.name, s.labels["device"]): s.value for f in families for s in f.samples}
    assert values[("node_network_speed_bytes", "eth0")] == 1_250_000_000
    # node_exporter's ethtool library reads the unknown speed as a plain number.
    assert values[("node_network_speed_bytes", "veth0")] == 536870911875000
    assert values[("node_network_iface_link", "eth0")] == 2  # no IFLA_LINK: its own index
    assert values[("node_network_iface_link", "veth0")] == 9
    assert ("node_network_name_assign_type", "veth0") not in values
    assert ("node_network_carrier", "veth0") not in values
    assert values[("node_network_receive_nohandler_total", "veth0")] == 0
    info = {s.labels["device"]: s.labels for f in families for s in f.samples
            if s.name == "node_network_info"}
    assert info["eth0"]["duplex"] == "Full" and info["veth0"]["duplex"] == "Unknown"
    assert info["veth0"]["operstate"] == "down" and "adminstate" not in info["eth0"]
    without = nl.netlink_families([link for link in links if link], None, sysfs, False)
    assert not any(f.name.startswith("node_network_receive") for f in without)
    assert_golden(families, "netclass_netlink")


NAMESPACE_SCRIPT = r"""
import json, os, subprocess, sys, tempfile, time, urllib.request
sys.path.insert(0, sys.argv[1])
node_exporter = sys.argv[2]
def run(*args):
    subprocess.run(args, check=True)
# No IPv6 in the namespace: no neighbour discovery traffic changing the counters.
for conf in ("all", "default"):
    with open(f"/proc/sys/net/ipv6/conf/{conf}/disable_ipv6", "w") as f:
        f.write("1")
run("ip", "link", "set", "lo", "up")
run("ip", "link", "add", "v0", "txqueuelen", "500", "type", "veth", "peer", "name", "v1")
run("ip", "link", "set", "v0", "mtu", "1400", "alias", "to the peer", "group", "3", "up")
run("ip", "link", "set", "v1", "up")
sysfs = tempfile.mkdtemp()
run("mount", "-t", "sysfs", "sysfs", sysfs)  # this namespace's /sys/class/net
from pathlib import Path
from agent.collectors.netclass import NetclassCollector
from agent.exposition.formats import TEXT, encode
out = {}
for mode in ("sysfs", "netlink"):
    collector = NetclassCollector(Path(sysfs), "^$", False, mode == "netlink", True)
    out[mode] = encode(collector.collect(), TEXT).decode()
proc = subprocess.Popen([node_exporter, "--web.listen-address=127.0.0.1:9100",
                         "--collector.disable-defaults", "--collector.netclass",
                         "--collector.netclass.netlink", "--collector.netclass_rtnl.with-stats"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    deadline = time.monotonic() + 10
    while True:
        try:
            out["node_exporter"] = urllib.request.urlopen(
                "http://127.0.0.1:9100/metrics", timeout=1).read().decode()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
finally:
    proc.terminate()
    proc.wait(timeout=10)
    run("umount", sysfs)
print(json.dumps(out))
"""

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def series(text: str) -> tuple[Series, dict[str, tuple[str, str]]]:
    values: Series = {}
    meta = {}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("node_network_"):
            continue
        meta[family.name] = (family.documentation, family.type)
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values, meta


@pytest.fixture(scope="module")
def namespace_outputs() -> dict[str, str]:
    require_tool("ip")
    node_exporter = require_tool("prometheus-node-exporter")
    done = subprocess.run([require_tool("unshare"), "-n", "-m", sys.executable, "-c",
                           NAMESPACE_SCRIPT, str(ROOT), node_exporter],
                          capture_output=True, text=True, timeout=60)
    if done.returncode and "Operation not permitted" in done.stderr:
        pytest.skip("no permission to create network and mount namespaces")
    assert done.returncode == 0, done.stderr
    outputs: dict[str, str] = json.loads(done.stdout)
    return outputs


def test_live_netlink_mode_gives_the_sysfs_modes_series(
        namespace_outputs: dict[str, str]) -> None:
    sysfs, _ = series(namespace_outputs["sysfs"])
    netlink, _ = series(namespace_outputs["netlink"])
    assert {k[1] for k in netlink if k[0] == "node_network_up"} == {
        (("device", device),) for device in ("lo", "v0", "v1")}

    def comparable(values: Series) -> Series:
        # Both modes' node_network_info carry address, broadcast, operstate and ifalias;
        # duplex is spelt by the ethtool library in netlink mode, adminstate is sysfs mode's.
        out: Series = {}
        for (name, labels), value in values.items():
            if name == "node_network_info":
                labels = tuple((k, v) for k, v in labels if k not in ("duplex", "adminstate"))
            out[(name, labels)] = value
        return out

    shared = comparable(sysfs).keys() & comparable(netlink).keys()
    only_sysfs = sorted(comparable(sysfs).keys() - shared)
    assert not only_sysfs, only_sysfs
    # Flags: sysfs shows the device's own, rtnetlink adds the operational bits (IFF_RUNNING,
    # IFF_LOWER_UP, IFF_DORMANT), and node_exporter exports each mode's as it comes.
    operational = 0x40 | 0x10000 | 0x20000
    flags = {k for k in shared if k[0] == "node_network_flags"}
    assert len(flags) == 3
    assert {k: sysfs[k] for k in flags} == {
        k: float(int(netlink[k]) & ~operational) for k in flags}
    assert {k: comparable(sysfs)[k] for k in shared - flags} == {
        k: comparable(netlink)[k] for k in shared - flags}
    mtu = ("node_network_mtu_bytes", (("device", "v0"),))
    assert netlink[mtu] == 1400
    assert netlink[("node_network_net_dev_group", (("device", "v0"),))] == 3
    assert netlink[("node_network_speed_bytes", (("device", "v0"),))] == 1_250_000_000
    info = [dict(k[1]) for k in netlink if k[0] == "node_network_info" and
            dict(k[1])["device"] == "v0"]
    assert info[0]["ifalias"] == "to the peer" and info[0]["duplex"] == "Full"


def test_live_netlink_mode_matches_node_exporter(namespace_outputs: dict[str, str]) -> None:
    # The attributes read from sysfs in this mode came after 1.5: left out of the comparison,
    # and so are lo's traffic counters, which the scrape of node_exporter itself moves.
    later = re.compile(r"node_network_(address_assign_type|device_id|name_assign_type)$")
    ours, our_meta = series(namespace_outputs["netlink"])
    theirs, their_meta = series(namespace_outputs["node_exporter"])
    lo_stats = {f"node_network_{name}" for name in nl.STATS64[:4]}
    ours = {k: v for k, v in ours.items() if not later.match(k[0])
            and not (k[0] in lo_stats and k[1] == (("device", "lo"),))}
    theirs = {k: v for k, v in theirs.items()
              if not (k[0] in lo_stats and k[1] == (("device", "lo"),))}
    assert len(theirs) > 100
    our_meta = {k: v for k, v in our_meta.items() if not later.match(k)}
    assert our_meta == their_meta
    assert ours == theirs
