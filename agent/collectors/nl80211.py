"""A minimal nl80211 client over generic netlink: WiFi interfaces, the BSS each is associated
with and its stations, decoded as node_exporter's wifi library decodes them (the wifi collector
exports those values)."""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass
from typing import Any

from agent.collectors import rtnetlink

CMD_GET_INTERFACE, CMD_GET_STATION, CMD_GET_SCAN = 5, 17, 32
ATTR_WIPHY, ATTR_IFINDEX, ATTR_IFNAME, ATTR_MAC = 1, 3, 4, 6
ATTR_STA_INFO, ATTR_WIPHY_FREQ, ATTR_BSS = 21, 38, 47
BSS_BSSID, BSS_INFORMATION_ELEMENTS, BSS_STATUS = 1, 6, 9
IE_SSID = 0
STA_INACTIVE_TIME, STA_RX_BYTES, STA_TX_BYTES, STA_SIGNAL, STA_TX_BITRATE = 1, 2, 3, 7, 8
STA_RX_PACKETS, STA_TX_PACKETS, STA_TX_RETRIES, STA_TX_FAILED = 9, 10, 11, 12
STA_RX_BITRATE, STA_CONNECTED_TIME, STA_BEACON_LOSS = 14, 16, 18
STA_RX_BYTES64, STA_TX_BYTES64 = 23, 24
RATE_BITRATE, RATE_BITRATE32 = 1, 5
VERSION = 1

# nl80211 u32 station counters -> the StationInfo fields the wifi collector reads.
_STATION_U32 = {STA_RX_PACKETS: "receivedpackets", STA_TX_PACKETS: "transmittedpackets",
                STA_TX_RETRIES: "transmitretries", STA_TX_FAILED: "transmitfailed",
                STA_BEACON_LOSS: "beaconloss"}


@dataclass
class Interface:
    name: str
    frequency_mhz: int
    index: int = 0
    mac: bytes | None = None


def _u32(value: bytes) -> int:
    return int(struct.unpack_from("=I", value)[0]) if len(value) >= 4 else 0


def _u64(value: bytes) -> int:
    return int(struct.unpack_from("=Q", value)[0]) if len(value) >= 8 else 0


def parse_interface(payload: bytes) -> Interface:
    interface = Interface("", 0)
    for kind, value in rtnetlink.attributes(payload[rtnetlink.GENLMSGHDR.size:]):
        if kind == ATTR_IFINDEX:
            interface.index = _u32(value)
        elif kind == ATTR_IFNAME:
            interface.name = rtnetlink.c_string(value)
        elif kind == ATTR_MAC:
            interface.mac = value
        elif kind == ATTR_WIPHY_FREQ:
            interface.frequency_mhz = _u32(value)
    return interface


def ssid(elements: bytes) -> str:
    """The SSID information element's text (invalid UTF-8 replaced), "" without one."""
    found = ""
    offset = 0
    while offset < len(elements):
        if offset + 2 > len(elements):
            raise ValueError("truncated information element")
        ident, length = elements[offset], elements[offset + 1]
        data = elements[offset + 2:offset + 2 + length]
        if len(data) < length:
            raise ValueError("truncated information element")
        if ident == IE_SSID:
            found = data.decode(errors="replace")
        offset += 2 + length
    return found


def parse_bss(payloads: list[bytes]) -> tuple[str, str, int] | None:
    """(bssid, ssid, status) of the first BSS that has a status (the one the interface is
    associated with), None if there is none."""
    for payload in payloads:
        for kind, value in rtnetlink.attributes(payload[rtnetlink.GENLMSGHDR.size:]):
            if kind != ATTR_BSS:
                continue
            nested = dict(rtnetlink.attributes(value))
            if BSS_STATUS not in nested:
                continue
            bssid = ":".join(f"{b:02x}" for b in nested.get(BSS_BSSID, b""))
            return bssid, ssid(nested.get(BSS_INFORMATION_ELEMENTS, b"")), _u32(
                nested[BSS_STATUS])
    return None


def _bitrate(value: bytes) -> int:
    rate = 0
    for kind, data in rtnetlink.attributes(value):
        if kind == RATE_BITRATE32:
            rate = _u32(data)
        elif kind == RATE_BITRATE and rate == 0 and len(data) >= 2:
            rate = struct.unpack_from("=H", data)[0]
    return rate * 100 * 1000  # units of 100 kbit/s


def parse_station(payload: bytes) -> dict[str, Any] | None:
    """A station's counters under the collector's field names plus "mac_address"; None if the
    message has no station info."""
    mac = ""
    for kind, value in rtnetlink.attributes(payload[rtnetlink.GENLMSGHDR.size:]):
        if kind == ATTR_MAC:
            mac = ":".join(f"{b:02x}" for b in value)
        elif kind == ATTR_STA_INFO:
            station = _station_info(value)
            station["mac_address"] = mac
            return station
    return None


def _station_info(data: bytes) -> dict[str, Any]:
    info: dict[str, Any] = dict.fromkeys(
        ("connected", "inactive", "receivebitrate", "transmitbitrate", "receivedbytes",
         "transmittedbytes", "signal", *_STATION_U32.values()), 0)
    for kind, value in rtnetlink.attributes(data):
        if kind == STA_CONNECTED_TIME:
            info["connected"] = _u32(value) * 10**9  # seconds, kept in nanoseconds
        elif kind == STA_INACTIVE_TIME:
            info["inactive"] = _u32(value) * 10**6  # milliseconds
        elif kind == STA_RX_BYTES64:
            info["receivedbytes"] = _u64(value)
        elif kind == STA_TX_BYTES64:
            info["transmittedbytes"] = _u64(value)
        elif kind == STA_SIGNAL and value:
            info["signal"] = struct.unpack_from("=b", value)[0]
        elif kind in _STATION_U32:
            info[_STATION_U32[kind]] = _u32(value)
        elif kind == STA_RX_BITRATE:
            info["receivebitrate"] = _bitrate(value)
        elif kind == STA_TX_BITRATE:
            info["transmitbitrate"] = _bitrate(value)
        # 32-bit byte counters only where the 64-bit ones are absent (or not yet seen).
        if kind == STA_RX_BYTES and info["receivedbytes"] == 0:
            info["receivedbytes"] = _u32(value)
        if kind == STA_TX_BYTES and info["transmittedbytes"] == 0:
            info["transmittedbytes"] = _u32(value)
    return info


class Client:
    """One scrape's nl80211 requests. Construction raises OSError ENOENT where the kernel has
    no nl80211 (no WiFi support)."""

    def __init__(self) -> None:
        self._family = rtnetlink.genl_family_id("nl80211")

    def _dump(self, command: int, interface: Interface | None = None) -> list[bytes]:
        attrs = b""
        if interface is not None:
            attrs = rtnetlink.encode_attribute(ATTR_IFINDEX, struct.pack("=I", interface.index))
            if interface.mac is not None:
                attrs += rtnetlink.encode_attribute(ATTR_MAC, interface.mac)
        request = rtnetlink.GENLMSGHDR.pack(command, VERSION, 0) + attrs
        return [payload for kind, payload in rtnetlink.dump(
            self._family, request, rtnetlink.NETLINK_GENERIC) if kind == self._family]

    def interfaces(self) -> list[Interface]:
        return [parse_interface(p) for p in self._dump(CMD_GET_INTERFACE)]

    def bss(self, interface: Interface) -> tuple[str, str, int] | None:
        return parse_bss(self._absent_is_empty(CMD_GET_SCAN, interface))

    def stations(self, interface: Interface) -> list[dict[str, Any]] | None:
        stations = []
        for payload in self._absent_is_empty(CMD_GET_STATION, interface):
            station = parse_station(payload)
            if station is None:  # the library fails the whole list: no station info
                return None
            stations.append(station)
        return stations

    def _absent_is_empty(self, command: int, interface: Interface) -> list[bytes]:
        try:
            return self._dump(command, interface)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return []
            raise
