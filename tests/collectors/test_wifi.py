from __future__ import annotations

import json
import logging
import shutil
import urllib.request
from pathlib import Path

import pytest

from agent.collectors.catalog import Context, WifiSettings
from agent.collectors.wifi import WifiCollector, create, parse_bss, parse_stations
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


@pytest.mark.parametrize(("status", "mode"), [(0, "client"), (1, "client"), (2, "ad-hoc"),
                                              (3, "unknown")])
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
