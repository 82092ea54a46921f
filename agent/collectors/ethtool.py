"""ethtool: driver information, NIC statistics and link modes of every network device through
the SIOCETHTOOL ioctl, as node_exporter's ethtool collector (and the ethtool library it uses)
reads them: ETHTOOL_GDRVINFO for node_ethtool_info, ETHTOOL_GSTRINGS + ETHTOOL_GSTATS for one
untyped node_ethtool_* series per driver statistic, ETHTOOL_GSET for the supported and
advertised link modes (node_network_*_speed_bytes, port types, autonegotiation, pause).

A device that does not answer a request (EOPNOTSUPP: loopback, most virtual devices) simply
lacks those series. The ioctl is a parameter, so tests answer it from fixture data.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import os
import re
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import Metric

from agent.collectors.common import DeviceFilter, Families

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

log = logging.getLogger("hostagent.ethtool")

SIOCETHTOOL = 0x8946
ETHTOOL_GSET = 0x00000001
ETHTOOL_GDRVINFO = 0x00000003
ETHTOOL_GSTRINGS = 0x0000001B
ETHTOOL_GSTATS = 0x0000001D
ETH_SS_STATS = 1
ETH_GSTRING_LEN = 32
MAX_GSTRINGS = 32768  # the ethtool library's limit on statistics per device
IFNAMSIZ = 16
# struct ethtool_drvinfo: cmd, driver[32], version[32], fw_version[32], bus_info[32],
# erom_version[32], reserved2[12], n_priv_flags, n_stats, testinfo_len, eedump_len,
# regdump_len.
DRVINFO = struct.Struct("=I32s32s32s32s32s12sIIIII")
# struct ethtool_cmd (44 bytes): cmd, supported, advertising, speed, duplex, port,
# phy_address, transceiver, autoneg, mdio_support, maxtxpkt, maxrxpkt, speed_hi, eth_tp_mdix,
# eth_tp_mdix_ctrl, lp_advertising, reserved[2].
ETHTOOL_CMD = struct.Struct("=IIIHBBBBBBIIHBBI8s")
HEADER = struct.Struct("=III")  # ethtool_gstrings: cmd, string_set, len; ethtool_stats: cmd,
STATS_HEADER = struct.Struct("=II")  # n_stats

# An ioctl on a device: (device name, request buffer) -> None, the buffer filled in place;
# OSError with the kernel's errno when the device does not answer.
Ioctl = Callable[[str, bytearray], None]


def socket_ioctl() -> Ioctl:
    """SIOCETHTOOL on a datagram socket: struct ifreq carries the name and a pointer to the
    request, which the kernel reads and fills."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def call(device: str, request: bytearray) -> None:
        buffer = (ctypes.c_char * len(request)).from_buffer(request)
        ifreq = struct.pack(f"{IFNAMSIZ}sP", device.encode()[:IFNAMSIZ - 1],
                            ctypes.addressof(buffer))
        ifreq += b"\0" * (40 - len(ifreq))
        try:
            fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)
        finally:
            del buffer
    return call


def _c_string(raw: bytes) -> str:
    """The bytes up to the first NUL, as the ethtool library reads the kernel's strings."""
    return raw.split(b"\0", 1)[0].decode(errors="replace")


@dataclass(frozen=True)
class DriverInfo:
    driver: str
    version: str
    firmware_version: str
    bus_info: str
    expansion_rom_version: str
    n_stats: int


@dataclass(frozen=True)
class LinkInfo:
    supported: int
    advertising: int
    autoneg: int


class Ethtool:
    """The three requests node_exporter makes, over an ioctl."""

    def __init__(self, ioctl: Ioctl) -> None:
        self._ioctl = ioctl

    def driver_info(self, device: str) -> DriverInfo:
        request = bytearray(DRVINFO.size)
        struct.pack_into("=I", request, 0, ETHTOOL_GDRVINFO)
        self._ioctl(device, request)
        fields = DRVINFO.unpack(bytes(request))
        return DriverInfo(_c_string(fields[1]), _c_string(fields[2]), _c_string(fields[3]),
                          _c_string(fields[4]), _c_string(fields[5]), fields[8])

    def stats(self, device: str) -> dict[str, int]:
        count = self.driver_info(device).n_stats
        if count > MAX_GSTRINGS:
            raise ValueError(f"ethtool currently doesn't support more than {MAX_GSTRINGS} "
                             f"entries, received {count}")
        strings = bytearray(HEADER.size + count * ETH_GSTRING_LEN)
        HEADER.pack_into(strings, 0, ETHTOOL_GSTRINGS, ETH_SS_STATS, count)
        self._ioctl(device, strings)
        values = bytearray(STATS_HEADER.size + count * 8)
        STATS_HEADER.pack_into(values, 0, ETHTOOL_GSTATS, count)
        self._ioctl(device, values)
        numbers = struct.unpack_from(f"={count}Q", values, STATS_HEADER.size)
        result: dict[str, int] = {}
        for i in range(count):
            start = HEADER.size + i * ETH_GSTRING_LEN
            key = _c_string(bytes(strings[start:start + ETH_GSTRING_LEN]))
            if key:
                result[key] = numbers[i]
        return result

    def link_info(self, device: str) -> LinkInfo:
        request = bytearray(ETHTOOL_CMD.size)
        struct.pack_into("=I", request, 0, ETHTOOL_GSET)
        self._ioctl(device, request)
        fields = ETHTOOL_CMD.unpack(bytes(request))
        return LinkInfo(fields[1], fields[2], fields[8])


# --- names ---------------------------------------------------------------------------------

_INVALID = re.compile(r"_*[^0-9A-Za-z_]+_*")
_RECEIVED = re.compile(r"(^|_)rx(_|$)")
_TRANSMITTED = re.compile(r"(^|_)tx(_|$)")


def sanitize(name: str) -> str:
    return _INVALID.sub("_", name)


def ethtool_name(metric: str) -> str:
    """node_exporter's buildEthtoolFQName."""
    name = sanitize(metric).lower().lstrip("_")
    # Go's regexp replaces non-overlapping matches left to right, as re.sub does.
    name = _RECEIVED.sub(r"\1received\2", name)
    name = _TRANSMITTED.sub(r"\1transmitted\2", name)
    return "node_ethtool_" + name


# Statistics with a name and help of their own (keyed by the sanitized statistic name).
KNOWN_STATS = {
    "rx_bytes": ("node_ethtool_received_bytes_total", "Network interface bytes received"),
    "rx_dropped": ("node_ethtool_received_dropped_total", "Number of received frames dropped"),
    "rx_errors": ("node_ethtool_received_errors_total",
                  "Number of received frames with errors"),
    "rx_packets": ("node_ethtool_received_packets_total", "Network interface packets received"),
    "tx_bytes": ("node_ethtool_transmitted_bytes_total", "Network interface bytes sent"),
    "tx_errors": ("node_ethtool_transmitted_errors_total", "Number of sent frames with errors"),
    "tx_packets": ("node_ethtool_transmitted_packets_total", "Network interface packets sent"),
}

INFO_HELP = ("A metric with a constant '1' value labeled by bus_info, device, driver, "
             "expansion_rom_version, firmware_version, version.")
INFO_LABELS = ["bus_info", "device", "driver", "expansion_rom_version", "firmware_version",
               "version"]

# Link mode bits (ethtool_link_mode_bit_indices) node_exporter names. ETHTOOL_GSET gives 32
# bits, so the modes above bit 31 that node_exporter lists never appear.
AUTONEG_BIT, PAUSE_BIT, ASYM_PAUSE_BIT = 6, 13, 14
PORT_BITS = {"TP": 7, "AUI": 8, "MII": 9, "FIBRE": 10, "BNC": 11, "Backplane": 16}
SPEED_BITS = {  # bit: (Mb/s, duplex, PHY)
    0: (10, "half", "T"), 1: (10, "full", "T"), 2: (100, "half", "T"), 3: (100, "full", "T"),
    4: (1000, "half", "T"), 5: (1000, "full", "T"), 12: (10000, "full", "T"),
    17: (1000, "full", "KX"), 18: (10000, "full", "KX4"), 19: (10000, "full", "KR"),
    20: (10000, "full", "R_FEC"), 21: (20000, "full", "MLD2"), 22: (20000, "full", "KR2"),
    23: (40000, "full", "KR4"), 24: (40000, "full", "CR4"), 25: (40000, "full", "SR4"),
    26: (40000, "full", "LR4"), 27: (56000, "full", "KR4"), 28: (56000, "full", "CR4"),
    29: (56000, "full", "SR4"), 30: (56000, "full", "LR4"), 31: (25000, "full", "CR"),
}
MBPS = 1000000.0 / 8.0  # bytes per second, as netclass's speeds

CAPABILITY_HELP = {
    "supported": ("If this port device supports autonegotiate",
                  "If this port device supports pause frames",
                  "If this port device supports asymmetric pause frames"),
    "advertised": ("If this port device offers autonegotiate",
                   "If this port device offers pause capability",
                   "If this port device offers asymmetric pause capability"),
}
SPEED_HELP = {
    "supported": "Combination of speeds and features supported by network device",
    "advertised": "Combination of speeds and features offered by network device",
}


def _link_families(out: Families, device: str, link: LinkInfo) -> None:
    for kind, modes in (("supported", link.supported), ("advertised", link.advertising)):
        for bit, (speed, duplex, phy) in SPEED_BITS.items():
            if modes & (1 << bit):
                out.add(f"node_network_{kind}_speed_bytes", SPEED_HELP[kind],
                        ["device", "duplex", "mode"], [device, duplex, f"{speed}base{phy}"],
                        speed * MBPS)
        autoneg_help, pause_help, asym_help = CAPABILITY_HELP[kind]
        out.add(f"node_network_autonegotiate_{kind}", autoneg_help, ["device"], [device],
                1.0 if modes & (1 << AUTONEG_BIT) else 0.0)
        out.add(f"node_network_pause_{kind}", pause_help, ["device"], [device],
                1.0 if modes & (1 << PAUSE_BIT) else 0.0)
        out.add(f"node_network_asymmetricpause_{kind}", asym_help, ["device"], [device],
                1.0 if modes & (1 << ASYM_PAUSE_BIT) else 0.0)
    for port, bit in PORT_BITS.items():
        if link.supported & (1 << bit):
            out.add("node_network_supported_port_info",
                    "Type of ports or PHYs supported by network device", ["device", "type"],
                    [device, port], 1.0)
    out.add("node_network_autonegotiate", "If this port is using autonegotiate", ["device"],
            [device], float(link.autoneg))


def stat_series(stats: dict[str, int], include: re.Pattern[str]) -> list[tuple[str, str, int]]:
    """(name, help, value) per statistic: names sanitized; a statistic whose name another one
    sanitizes to as well is dropped with it, as node_exporter cannot tell which to keep."""
    by_name: dict[str, tuple[str, int] | None] = {}
    for key, value in stats.items():
        metric = sanitize(key)
        if not include.search(metric):
            continue
        name = ethtool_name(metric)
        by_name[name] = None if name in by_name else (metric, value)
    series = []
    for name, kept in sorted(by_name.items()):
        if kept is None:
            continue
        metric, value = kept
        known = KNOWN_STATS.get(metric)
        if known is not None:
            series.append((known[0], known[1], value))
        else:
            series.append((name, f"Network interface {metric}", value))
    return series


def _errno(exc: Exception) -> int | None:
    return exc.errno if isinstance(exc, OSError) else None


class EthtoolCollector:
    def __init__(self, sysfs: Path, ethtool: Ethtool, devices: DeviceFilter,
                 metrics_include: str) -> None:
        self._net = sysfs / "class" / "net"
        self._ethtool = ethtool
        self._devices = devices
        self._include = re.compile(metrics_include)

    def _device_names(self) -> list[str] | None:
        try:
            entries = sorted(os.scandir(self._net), key=lambda e: e.name)
        except (FileNotFoundError, PermissionError):
            return None
        # procfs's NetClassDevices: every entry but regular files (bonding_masters).
        return [e.name for e in entries if not e.is_file(follow_symlinks=False)]

    def collect(self) -> list[Metric]:
        devices = self._device_names()
        if devices is None:
            return []
        if not devices:
            raise RuntimeError("no network devices found")
        out = Families()
        for device in devices:
            if self._devices.ignored(device):
                continue
            self._collect_device(out, device)
        return out.result()

    def _collect_device(self, out: Families, device: str) -> None:
        try:
            _link_families(out, device, self._ethtool.link_info(device))
        except (OSError, ValueError) as exc:
            self._log("link info", device, exc)
        try:
            info = self._ethtool.driver_info(device)
            out.add("node_ethtool_info", INFO_HELP, INFO_LABELS,
                    [info.bus_info, device, info.driver, info.expansion_rom_version,
                     info.firmware_version, info.version], 1.0)
        except (OSError, ValueError) as exc:
            self._log("driver info", device, exc)
        try:
            stats = self._ethtool.stats(device)
        except (OSError, ValueError) as exc:
            self._log("stats", device, exc)
            return
        for name, help_text, value in stat_series(stats, self._include):
            out.add(name, help_text, ["device"], [device], float(value), untyped=True)

    @staticmethod
    def _log(what: str, device: str, exc: Exception) -> None:
        # A device without ethtool support answers EOPNOTSUPP: not worth more than debug.
        level = logging.DEBUG if _errno(exc) == errno.EOPNOTSUPP else logging.ERROR
        log.log(level, "ethtool %s error device=%s err=%s", what, device, exc)


def create(context: Context, settings: Any) -> EthtoolCollector:
    return EthtoolCollector(context.sysfs, Ethtool(socket_ioctl()),
                            DeviceFilter(settings.device_include, settings.device_exclude),
                            settings.metrics_include)
