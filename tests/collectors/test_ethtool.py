"""The ethtool collector on node_exporter's ethtool fixtures (ethtool -i, -S and settings
output of an e1000e NIC), answered through an injected SIOCETHTOOL layer that fills the
kernel's structures; and live on this host's devices through the real ioctl."""

from __future__ import annotations

import errno
import re
import struct
from pathlib import Path

import pytest

from agent.collectors.common import DeviceFilter
from agent.collectors.ethtool import (
    DRVINFO,
    ETH_GSTRING_LEN,
    ETHTOOL_CMD,
    ETHTOOL_GDRVINFO,
    ETHTOOL_GSET,
    ETHTOOL_GSTATS,
    ETHTOOL_GSTRINGS,
    Ethtool,
    EthtoolCollector,
    ethtool_name,
    socket_ioctl,
    stat_series,
)
from tests.golden import FIXTURES, assert_golden, assert_node_exporter

ETHTOOL = FIXTURES / "ethtool"
# Link mode bits as the kernel numbers them (ethtool_link_mode_bit_indices).
MODE_BITS = {"10baseT/Half": 0, "10baseT/Full": 1, "100baseT/Half": 2, "100baseT/Full": 3,
             "1000baseT/Half": 4, "1000baseT/Full": 5, "10000baseT/Full": 12}
PORT_BITS = {"TP": 7, "AUI": 8, "MII": 9, "FIBRE": 10, "BNC": 11, "Backplane": 16}


def _fixture_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def _settings(path: Path) -> tuple[int, int, int]:
    """supported, advertising, autoneg from `ethtool DEV` output."""
    supported = advertising = autoneg = 0
    section = None
    for line in path.read_text().splitlines():
        text = line.strip()
        if text.startswith("Supported ports:"):
            for port in re.findall(r"\w+", text.split(":", 1)[1]):
                supported |= 1 << PORT_BITS[port]
        if text.startswith(("Supported link modes:", "Advertised link modes:")):
            section = "supported" if text.startswith("Supported") else "advertised"
            text = text.split(":", 1)[1]
        elif ":" in text:
            section = None
        if section is not None:
            bits = sum(1 << MODE_BITS[mode] for mode in text.split())
            if section == "supported":
                supported |= bits
            else:
                advertising |= bits
        pause = {"Supported pause frame use: Symmetric": (1 << 13, 0),
                 "Advertised pause frame use: Symmetric": (0, 1 << 13)}.get(text, (0, 0))
        supported, advertising = supported | pause[0], advertising | pause[1]
        if text == "Supports auto-negotiation: Yes":
            supported |= 1 << 6
        if text == "Advertised auto-negotiation: Yes":
            advertising |= 1 << 6
        if text == "Auto-negotiation: on":
            autoneg = 1
    return supported, advertising, autoneg


def fixture_ioctl(directory: Path):  # type: ignore[no-untyped-def]
    """Answers SIOCETHTOOL requests as a driver would, from ethtool's text output; a device
    without a fixture file answers EOPNOTSUPP, a statistics file 'ERROR: N' errno N."""

    def stats(device: str) -> list[tuple[str, int]]:
        path = directory / device / "statistics"
        if not path.exists():
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")
        pairs = []
        for line in _fixture_lines(path):
            if line == "NIC statistics:":
                continue
            key, value = line.split(": ")
            if key == "ERROR":
                raise OSError(int(value), "fixture error")
            pairs.append((key, int(value)))
        return pairs

    def call(device: str, request: bytearray) -> None:
        command = struct.unpack_from("=I", request)[0]
        if command == ETHTOOL_GDRVINFO:
            path = directory / device / "driver"
            if not path.exists():
                raise OSError(errno.EOPNOTSUPP, "Operation not supported")
            info = dict(line.split(":", 1) for line in _fixture_lines(path))
            try:
                n_stats = len(stats(device))
            except OSError:
                n_stats = 0
            DRVINFO.pack_into(request, 0, command, *(info.get(k, "").strip().encode() for k in (
                "driver", "version", "firmware-version", "bus-info", "expansion-rom-version")),
                b"", 0, n_stats, 0, 0, 0)
        elif command == ETHTOOL_GSTRINGS:
            for i, (key, _) in enumerate(stats(device)):
                struct.pack_into(f"{ETH_GSTRING_LEN}s", request, 12 + i * ETH_GSTRING_LEN,
                                 key.encode())
        elif command == ETHTOOL_GSTATS:
            values = [value for _, value in stats(device)]
            struct.pack_into(f"={len(values)}Q", request, 8, *values)
        elif command == ETHTOOL_GSET:
            path = directory / device / "settings"
            if not path.exists():
                raise OSError(errno.EOPNOTSUPP, "Operation not supported")
            supported, advertising, autoneg = _settings(path)
            fields = list(ETHTOOL_CMD.unpack(bytes(request)))
            fields[1:3], fields[8] = [supported, advertising], autoneg
            ETHTOOL_CMD.pack_into(request, 0, *fields)
        else:
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")
    return call


def collector(include: str | None = None, exclude: str | None = None,
              metrics: str = ".*") -> EthtoolCollector:
    return EthtoolCollector(ETHTOOL / "sys", Ethtool(fixture_ioctl(ETHTOOL / "ethtool")),
                            DeviceFilter(include, exclude), metrics)


def test_node_exporter_fixture() -> None:
    families = collector().collect()
    # node_exporter's own expected output for this fixture (its ethtool_linux_test.go).
    assert_node_exporter(families, ETHTOOL / "node_exporter.prom")
    assert_golden(families, "ethtool")


def test_device_and_metric_filters() -> None:
    assert collector(exclude="^eth").collect() == []
    names = {f.name for f in collector(include="eth0", metrics="^rx_").collect()}
    assert "node_ethtool_received_unicast" in names
    assert "node_ethtool_transmitted_aborted" not in names
    assert "node_ethtool_info" in names  # the filter applies to statistics only


@pytest.mark.parametrize(("metric", "name"), [
    ("port.rx_errors", "node_ethtool_port_received_errors"),
    ("rx_errors", "node_ethtool_received_errors"),
    ("Queue[0] AllocFails", "node_ethtool_queue_0_allocfails"),
    ("Tx LPI entry count", "node_ethtool_transmitted_lpi_entry_count"),
    ("port.VF_admin_queue_requests", "node_ethtool_port_vf_admin_queue_requests"),
    ("[3]: tx_bytes", "node_ethtool_3_transmitted_bytes"),
    ("     err", "node_ethtool_err"),
])
def test_names_as_node_exporter(metric: str, name: str) -> None:
    assert ethtool_name(metric) == name


def test_statistics_that_sanitize_alike_are_dropped() -> None:
    series = stat_series({"giant hdr": 1, "giant_hdr": 2, "Giant-Hdr": 3, "rx_bytes": 4},
                         re.compile(".*"))
    assert series == [("node_ethtool_received_bytes_total", "Network interface bytes received",
                       4)]


def test_no_net_class_is_no_data(tmp_path: Path) -> None:
    assert EthtoolCollector(tmp_path, Ethtool(fixture_ioctl(tmp_path)), DeviceFilter(None, None),
                            ".*").collect() == []


def test_live_devices_through_the_kernel() -> None:
    # Loopback answers EOPNOTSUPP to every request: no series for it, and no error.
    families = EthtoolCollector(Path("/sys"), Ethtool(socket_ioctl()), DeviceFilter("^lo$", None),
                                ".*").collect()
    assert families == []
    with pytest.raises(OSError) as raised:
        Ethtool(socket_ioctl()).driver_info("lo")
    assert raised.value.errno == errno.EOPNOTSUPP
