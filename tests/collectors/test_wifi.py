from __future__ import annotations

import errno
import json
import logging
import shutil
import struct
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from agent.collectors import nl80211, rtnetlink
from agent.collectors.catalog import Context, WifiSettings
from agent.collectors.wifi import (
    Bss,
    Nl80211Source,
    WifiCollector,
    create,
    parse_bss,
    parse_stations,
    wifi_families,
)
from agent.exposition.formats import TEXT, encode
from tests.golden import FIXTURES, assert_golden, assert_node_exporter

WIFI = FIXTURES / "wifi"


def test_fixtures_mode_matches_node_exporter_e2e_output() -> None:
    # node_exporter's e2e fixture directory: wlan1 has neither bss.json nor stationinfo.json
    # (frequency only), the third interface has no name (skipped).
    families = WifiCollector(WIFI).collect()
    assert_node_exporter(families, WIFI / "node_exporter.prom")
    assert_golden(families, "wifi")


def test_go_json_decoding_rules() -> None:
    # Field names match without regard to case; absent numbers are zero; BSSID is base64.
    bss = parse_bss('{"SSID": "x y", "BssId": "AAECAwQF", "STATUS": 2}')
    assert (bss.ssid, bss.bssid, bss.status) == ("x y", "00:01:02:03:04:05", 2)
    assert parse_bss("{}").bssid == ""
    station = parse_stations('[{"HardwareAddr": "qrvM3e7/", "ReceivedPackets": 7}]')[0]
    assert station["mac_address"] == "aa:bb:cc:dd:ee:ff"
    assert station["receivedpackets"] == 7 and station["signal"] == 0
    with pytest.raises(ValueError, match="signal is not an integer"):
        parse_stations('[{"signal": "-52"}]')
    with pytest.raises(ValueError, match="not base64"):
        parse_bss('{"bssid": "zz!"}')


# The wifi library's BSSStatus: 2 is "not associated" there, IBSS joined is 3.
@pytest.mark.parametrize(("status", "mode"), [(0, "client"), (1, "client"), (2, "unknown"),
                                              (3, "ad-hoc"), (4, "unknown")])
def test_station_info_mode(tmp_path: Path, status: int, mode: str) -> None:
    (tmp_path / "wlan0").mkdir()
    (tmp_path / "interfaces.json").write_text('[{"name": "wlan0", "frequency": 5180}]')
    (tmp_path / "wlan0" / "bss.json").write_text(json.dumps({"ssid": "s", "status": status}))
    families = {f.name: f for f in WifiCollector(tmp_path).collect()}
    assert families["node_wifi_station_info"].samples[0].labels["mode"] == mode
    assert families["node_wifi_interface_frequency_hertz"].samples[0].value == 5.18e9


def test_missing_or_bad_interfaces_fail_the_run(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="failed to retrieve wifi interfaces"):
        WifiCollector(tmp_path).collect()
    (tmp_path / "interfaces.json").write_text("{")
    with pytest.raises(OSError, match="failed to retrieve wifi interfaces"):
        WifiCollector(tmp_path).collect()


def test_station_data_optional_per_device(tmp_path: Path) -> None:
    shutil.copytree(WIFI, tmp_path, dirs_exist_ok=True)
    (tmp_path / "wlan0" / "bss.json").unlink()
    names = {f.name for f in WifiCollector(tmp_path).collect()}
    assert "node_wifi_station_info" not in names
    assert "node_wifi_station_signal_dbm" in names


def test_live_mode_reports_no_data(caplog: pytest.LogCaptureFixture) -> None:
    collector = create(Context(), WifiSettings())
    with caplog.at_level(logging.DEBUG, logger="hostagent.wifi"):
        assert collector.collect() == []
    assert "not available" in caplog.text
    assert create(Context(), WifiSettings(fixtures=str(WIFI))).collect()


def test_same_output_as_node_exporter_on_its_fixture_directory(node_exporter) -> None:
    # The real node_exporter (1.5 here) in its --collector.wifi.fixtures mode on the same
    # directory: the same exposition, byte for byte, apart from the packet counters a later
    # release added (checked above against the expected output).
    url = node_exporter("--collector.disable-defaults", "--collector.wifi",
                        f"--collector.wifi.fixtures={WIFI}")
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    theirs = "".join(line + "\n" for line in text.splitlines() if "node_wifi_" in line)
    added = ("node_wifi_station_received_packets",  # counter families are named without _total
             "node_wifi_station_transmitted_packets")
    mine = [f for f in WifiCollector(WIFI).collect() if f.name not in added]
    assert encode(mine, TEXT).decode() == theirs


def genl(*attrs: bytes) -> bytes:
    return rtnetlink.GENLMSGHDR.pack(7, 1, 0) + b"".join(attrs)


def attr(kind: int, value: bytes) -> bytes:
    return rtnetlink.encode_attribute(kind, value)


def u32(value: int) -> bytes:
    return struct.pack("=I", value)


INTERFACE = genl(attr(nl80211.ATTR_IFINDEX, u32(3)), attr(nl80211.ATTR_IFNAME, b"wlan0\0"),
                 attr(nl80211.ATTR_MAC, bytes.fromhex("aabbccddeeff")),
                 attr(nl80211.ATTR_WIPHY_FREQ, u32(5180)))
SCAN = [
    # A cached BSS nearby (no status), then the associated one.
    genl(attr(nl80211.ATTR_BSS, attr(nl80211.BSS_BSSID, bytes(6)))),
    genl(attr(nl80211.ATTR_BSS, attr(nl80211.BSS_BSSID, bytes.fromhex("001122334455")) +
              attr(nl80211.BSS_INFORMATION_ELEMENTS, bytes([0, 4]) + b"home" +
                   bytes([1, 2, 0x82, 0x84])) +
              attr(nl80211.BSS_STATUS, u32(1)))),
]
STATION = genl(
    attr(nl80211.ATTR_MAC, bytes.fromhex("010203040506")),
    attr(nl80211.ATTR_STA_INFO, b"".join((
        attr(nl80211.STA_CONNECTED_TIME, u32(60)), attr(nl80211.STA_INACTIVE_TIME, u32(800)),
        attr(nl80211.STA_RX_BYTES, u32(7)), attr(nl80211.STA_RX_BYTES64, struct.pack("=Q", 2**33)),
        attr(nl80211.STA_TX_BYTES, u32(9)), attr(nl80211.STA_SIGNAL, struct.pack("=b", -26)),
        attr(nl80211.STA_RX_PACKETS, u32(11)), attr(nl80211.STA_TX_PACKETS, u32(12)),
        attr(nl80211.STA_TX_RETRIES, u32(20)), attr(nl80211.STA_TX_FAILED, u32(4)),
        attr(nl80211.STA_BEACON_LOSS, u32(2)),
        attr(nl80211.STA_RX_BITRATE, attr(nl80211.RATE_BITRATE, struct.pack("=H", 2560))),
        attr(nl80211.STA_TX_BITRATE, attr(nl80211.RATE_BITRATE32, u32(3280)) +
             attr(nl80211.RATE_BITRATE, struct.pack("=H", 1)))))))


def test_nl80211_messages() -> None:
    interface = nl80211.parse_interface(INTERFACE)
    assert (interface.name, interface.index, interface.frequency_mhz) == ("wlan0", 3, 5180)
    assert interface.mac == bytes.fromhex("aabbccddeeff")
    assert nl80211.parse_bss(SCAN) == ("00:11:22:33:44:55", "home", 1)
    assert nl80211.parse_bss(SCAN[:1]) is None
    with pytest.raises(ValueError, match="truncated"):
        nl80211.ssid(bytes([0, 9]) + b"short")
    station = nl80211.parse_station(STATION)
    assert station is not None
    assert station == {
        "mac_address": "01:02:03:04:05:06", "connected": 60 * 10**9, "inactive": 800 * 10**6,
        "receivedbytes": 2**33, "transmittedbytes": 9, "signal": -26, "receivedpackets": 11,
        "transmittedpackets": 12, "transmitretries": 20, "transmitfailed": 4, "beaconloss": 2,
        "receivebitrate": 256_000_000, "transmitbitrate": 328_000_000}
    assert nl80211.parse_station(genl(attr(nl80211.ATTR_MAC, bytes(6)))) is None


class Replayed(Nl80211Source):
    """Canned nl80211 replies in place of the kernel's (this host has no WiFi)."""

    def __init__(self) -> None:
        pass

    def interfaces(self) -> list[nl80211.Interface]:
        return [nl80211.parse_interface(INTERFACE), nl80211.Interface("", 2412)]

    def bss(self, interface: nl80211.Interface) -> Bss | None:
        found = nl80211.parse_bss(SCAN)
        assert found is not None
        return Bss(found[1], found[0], found[2])

    def stations(self, interface: nl80211.Interface) -> list[dict[str, Any]] | None:
        station = nl80211.parse_station(STATION)
        return None if station is None else [station]


def test_live_mode_families_from_nl80211_replies() -> None:
    text = encode(wifi_families(Replayed()), TEXT).decode()
    assert 'node_wifi_interface_frequency_hertz{device="wlan0"} 5.18e+09' in text
    assert 'node_wifi_station_info{bssid="00:11:22:33:44:55",device="wlan0",mode="client",' \
           'ssid="home"} 1' in text
    labels = '{device="wlan0",mac_address="01:02:03:04:05:06"}'
    for line in (f"node_wifi_station_connected_seconds_total{labels} 60",
                 f"node_wifi_station_inactive_seconds{labels} 0.8",
                 f"node_wifi_station_receive_bytes_total{labels} 8.589934592e+09",
                 f"node_wifi_station_transmit_bits_per_second{labels} 3.28e+08",
                 f"node_wifi_station_signal_dbm{labels} -26"):
        assert line in text.splitlines()


def test_kernel_without_nl80211_is_no_data() -> None:
    # This host's kernel has no nl80211 family (no WiFi); where one has, it answers.
    try:
        nl80211.Client()
    except OSError as exc:
        assert exc.errno == errno.ENOENT
        assert WifiCollector(None).collect() == []
    else:
        WifiCollector(None).collect()
