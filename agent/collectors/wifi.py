"""wifi: node_wifi_* interface frequency, BSS and station statistics, as node_exporter's wifi
collector (off by default).

With `fixtures` set, the data comes from node_exporter's fixture directory layout
(interfaces.json, <device>/bss.json, <device>/stationinfo.json: the JSON encoding of its wifi
library's Interface, BSS and StationInfo values), as `--collector.wifi.fixtures`. Without it,
from nl80211 over generic netlink; a kernel without nl80211 gives no data (logged at debug
level), as node_exporter.

mode: the library's BSSStatus (authenticated 0, associated 1, not associated 2, IBSS joined 3)
is the kernel's nl80211_bss_status number taken as is, so a live IBSS (kernel 2) shows as
"unknown" in node_exporter too; kept.
"""

from __future__ import annotations

import base64
import binascii
import errno
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from agent.collectors.common import go_order
from agent.collectors.nl80211 import Interface

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

log = logging.getLogger("hostagent.wifi")

# the wifi library's BSSStatus -> node_wifi_station_info's mode.
BSS_MODES = {0: "client", 1: "client", 3: "ad-hoc"}  # authenticated, associated, IBSS joined
STATION_LABELS = ["device", "mac_address"]
# (metric suffix, StationInfo field, help, is a counter, nanoseconds -> seconds), in
# node_exporter's order.
STATION_FIELDS: tuple[tuple[str, str, str, bool, bool], ...] = (
    ("connected_seconds_total", "connected",
     "The total number of seconds a station has been connected to an access point.",
     True, True),
    ("inactive_seconds", "inactive",
     "The number of seconds since any wireless activity has occurred on a station.",
     False, True),
    ("receive_bits_per_second", "receivebitrate",
     "The current WiFi receive bitrate of a station, in bits per second.", False, False),
    ("transmit_bits_per_second", "transmitbitrate",
     "The current WiFi transmit bitrate of a station, in bits per second.", False, False),
    ("receive_bytes_total", "receivedbytes",
     "The total number of bytes received by a WiFi station.", True, False),
    ("transmit_bytes_total", "transmittedbytes",
     "The total number of bytes transmitted by a WiFi station.", True, False),
    ("received_packets_total", "receivedpackets",
     "The total number of packets received by a station.", True, False),
    ("transmitted_packets_total", "transmittedpackets",
     "The total number of packets transmitted by a station.", True, False),
    ("signal_dbm", "signal",
     "The current WiFi signal strength, in decibel-milliwatts (dBm).", False, False),
    ("transmit_retries_total", "transmitretries",
     "The total number of times a station has had to retry while sending a packet.",
     True, False),
    ("transmit_failed_total", "transmitfailed",
     "The total number of times a station has failed to send a packet.", True, False),
    ("beacon_loss_total", "beaconloss",
     "The total number of times a station has detected a beacon loss.", True, False),
)


@dataclass
class Bss:
    ssid: str
    bssid: str
    status: int


Station = dict[str, Any]  # lower-cased StationInfo field -> value, plus "mac_address"


def _fields(value: Any, what: str) -> dict[str, Any]:
    """A JSON object's members by lower-cased name: Go's decoder matches field names without
    regard to case (a later duplicate wins, as there)."""
    if not isinstance(value, dict):
        raise ValueError(f"{what}: expected a JSON object")
    return {key.lower(): member for key, member in value.items()}


def _integer(fields: dict[str, Any], name: str, what: str) -> int:
    value = fields.get(name)
    if value is None:  # absent or null: Go leaves the zero value
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what}: {name} is not an integer")
    return value


def _string(fields: dict[str, Any], name: str, what: str) -> str:
    value = fields.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{what}: {name} is not a string")
    return value


def hardware_address(fields: dict[str, Any], name: str, what: str) -> str:
    """A net.HardwareAddr (base64 in JSON) as Go prints it: lower-case hex pairs joined by
    colons, "" when empty."""
    encoded = _string(fields, name, what)
    try:
        raw = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise ValueError(f"{what}: {name} is not base64") from None
    return ":".join(f"{byte:02x}" for byte in raw)


def parse_interfaces(text: str) -> list[Interface]:
    data = json.loads(text)
    if data is None:
        return []
    if not isinstance(data, list):
        raise ValueError("interfaces.json: expected a JSON array")
    interfaces = []
    for entry in data:
        if entry is None:  # a null element decodes to a nil *Interface, whose use panics
            raise ValueError("interfaces.json: null interface")
        fields = _fields(entry, "interfaces.json")
        interfaces.append(Interface(_string(fields, "name", "interfaces.json"),
                                    _integer(fields, "frequency", "interfaces.json")))
    return interfaces


def parse_bss(text: str) -> Bss:
    fields = _fields(json.loads(text), "bss.json")
    return Bss(_string(fields, "ssid", "bss.json"),
               hardware_address(fields, "bssid", "bss.json"),
               _integer(fields, "status", "bss.json"))


def parse_stations(text: str) -> list[Station]:
    data = json.loads(text)
    if data is None:
        return []
    if not isinstance(data, list):
        raise ValueError("stationinfo.json: expected a JSON array")
    stations = []
    for entry in data:
        fields = _fields(entry, "stationinfo.json")
        station: Station = {field: _integer(fields, field, "stationinfo.json")
                            for _, field, _, _, _ in STATION_FIELDS}
        station["mac_address"] = hardware_address(fields, "hardwareaddr", "stationinfo.json")
        stations.append(station)
    return stations


def _optional(path: Path) -> str | None:
    """A per-device file's text, or None where node_exporter treats it as absent (the
    statistic is not available for that interface type)."""
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


class FixtureSource:
    """node_exporter's fixture directory, read as its test double reads it."""

    def __init__(self, root: Path) -> None:
        self._root = root

    def interfaces(self) -> list[Interface]:
        return parse_interfaces((self._root / "interfaces.json").read_text())

    def bss(self, interface: Interface) -> Bss | None:
        text = _optional(self._root / interface.name / "bss.json")
        return None if text is None else parse_bss(text)

    def stations(self, interface: Interface) -> list[Station] | None:
        text = _optional(self._root / interface.name / "stationinfo.json")
        return None if text is None else parse_stations(text)


class Nl80211Source:
    def __init__(self) -> None:
        from agent.collectors import nl80211
        self._client = nl80211.Client()

    def interfaces(self) -> list[Interface]:
        return self._client.interfaces()

    def bss(self, interface: Interface) -> Bss | None:
        found = self._client.bss(interface)
        return None if found is None else Bss(found[1], found[0], found[2])

    def stations(self, interface: Interface) -> list[Station] | None:
        return self._client.stations(interface)


class WifiCollector:
    def __init__(self, fixtures: Path | None) -> None:
        self._fixtures = fixtures

    def collect(self) -> list[Metric]:
        source: FixtureSource | Nl80211Source
        if self._fixtures is not None:
            source = FixtureSource(self._fixtures)
        else:
            try:
                source = Nl80211Source()
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.EACCES, errno.EPERM):
                    raise OSError(f"failed to access wifi data: {exc}") from exc
                log.debug("wifi collector metrics are not available for this system")
                return []
        return wifi_families(source)


def wifi_families(source: FixtureSource | Nl80211Source) -> list[Metric]:
    frequency = GaugeMetricFamily(
        "node_wifi_interface_frequency_hertz",
        "The current frequency a WiFi interface is operating at, in hertz.",
        labels=["device"])
    info = GaugeMetricFamily(
        "node_wifi_station_info",
        "Labeled WiFi interface station information as provided by the operating system.",
        labels=["device", "bssid", "ssid", "mode"])
    stations = {
        suffix: (CounterMetricFamily if counter else GaugeMetricFamily)(
            f"node_wifi_station_{suffix}", help_text, labels=STATION_LABELS)
        for suffix, _, help_text, counter, _ in STATION_FIELDS
    }
    try:
        interfaces = source.interfaces()
    except (OSError, ValueError) as exc:
        raise OSError(f"failed to retrieve wifi interfaces: {exc}") from exc
    for interface in interfaces:
        if not interface.name:  # some virtual devices have no name
            continue
        log.debug("probing wifi device %s", interface.name)
        frequency.add_metric([interface.name], interface.frequency_mhz * 1e6)
        bss = source.bss(interface)
        if bss is None:
            log.debug("BSS information not found for wifi device %s", interface.name)
        else:
            info.add_metric([interface.name, bss.bssid, bss.ssid,
                             BSS_MODES.get(bss.status, "unknown")], 1.0)
        found = source.stations(interface)
        if found is None:
            log.debug("station information not found for wifi device %s", interface.name)
            continue
        for station in found:
            labels = [interface.name, station["mac_address"]]
            for suffix, field, _, _, nanoseconds in STATION_FIELDS:
                value = station[field]
                stations[suffix].add_metric(
                    labels, value / 1e9 if nanoseconds else float(value))
    return go_order([frequency, info, *stations.values()])


def create(context: Context, settings: Any) -> WifiCollector:
    return WifiCollector(Path(settings.fixtures) if settings.fixtures else None)
