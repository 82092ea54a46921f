from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric

from agent.collectors import hwmon
from agent.collectors.common import DeviceFilter
from agent.collectors.hwmon import HwmonCollector, chip_name, clean_name, explode_filename
from tests.collectors.peer import assert_matches_peer
from tests.golden import FIXTURES, assert_golden

SYS = FIXTURES / "hwmon" / "sys"
CLASS = SYS / "class" / "hwmon"


def collect(sysfs: Path = SYS, chips: tuple[str | None, str | None] = (None, None),
            sensors: tuple[str | None, str | None] = (None, None)) -> list[Metric]:
    return HwmonCollector(sysfs, DeviceFilter(*chips), DeviceFilter(*sensors)).collect()


def series(families: list[Metric], name: str) -> dict[tuple[str, str], float]:
    return {(s.labels["chip"], s.labels["sensor"]): s.value
            for f in families for s in f.samples if s.name == name}


def test_explode_filename() -> None:
    assert explode_filename("temp1_crit_alarm") == ("temp", 1, "crit_alarm")
    assert explode_filename("pwm2") == ("pwm", 2, "")
    assert explode_filename("beep_enable") == ("beep_enable", 0, "")
    assert explode_filename("in10_input") == ("in", 10, "input")
    assert explode_filename("1") is None


def test_clean_name() -> None:
    assert clean_name("coretemp.0") == "coretemp_0"
    assert clean_name("nct6779\n") == "nct6779"
    assert clean_name("0000:00:1d.0") == "0000:00:1d_0"
    assert clean_name("...") == ""


def test_chip_names_prefer_device_then_name_then_directory() -> None:
    assert chip_name(str(CLASS / "hwmon0")) == "platform_coretemp_0"
    assert chip_name(str(CLASS / "hwmon2")) == "nct6779"  # no device link
    assert chip_name(str(CLASS / "hwmon3")) == "hwmon3"  # neither name nor device
    assert chip_name(str(CLASS / "hwmon4")) == "nvme_nvme0"


def test_golden() -> None:
    families = collect()
    temps = series(families, "node_hwmon_temp_celsius")
    assert temps[("platform_coretemp_0", "temp3")] == 52.5
    # tempN and tempN_input both present: the bare file is the value, _input keeps its name
    assert temps[("hwmon3", "temp1")] == 56.0
    assert series(families, "node_hwmon_temp_input_celsius") == {("hwmon3", "temp1"): -5.5}
    fans = series(families, "node_hwmon_fan_rpm")
    assert fans[("platform_applesmc_768", "fan1")] == 0.0  # a stopped fan is reported
    assert fans[("nct6779", "fan2")] == 1098.0
    labels = {(s.labels["chip"], s.labels["sensor"]): s.labels["label"]
              for f in families for s in f.samples if s.name == "node_hwmon_sensor_label"}
    assert labels[("platform_applesmc_768", "fan1")] == "Left side  "  # kept as written
    assert ("platform_coretemp_0", "temp4") not in labels
    # an unparsable value is skipped, its sensor's other values kept
    assert ("nct6779", "temp8") not in temps
    assert series(families, "node_hwmon_freq_freq_mhz") == {
        ("0000:00:01_0_0000:01:00_0", "sclk"): 1500.0}
    assert series(families, "node_hwmon_energy_joule_total") == {
        ("0000:00:01_0_0000:01:00_0", "energy1"): 123.456789}
    types = {f.name: f.type for f in families}
    assert types["node_hwmon_energy_joule"] == "counter"
    assert {t for n, t in types.items() if n != "node_hwmon_energy_joule"} == {"gauge"}
    assert_golden(families, "hwmon")


def test_chip_filters() -> None:
    chips = {s.labels["chip"] for f in collect(chips=("^platform", None)) for s in f.samples}
    assert chips == {"platform_coretemp_0", "platform_applesmc_768"}
    chips = {s.labels["chip"] for f in collect(chips=(None, "coretemp|nct")) for s in f.samples}
    assert "platform_coretemp_0" not in chips and "nct6779" not in chips and "hwmon3" in chips


def test_sensor_filter_matches_chip_semicolon_sensor() -> None:
    families = collect(sensors=(None, "^platform_coretemp_0;temp[12]$"))
    temps = series(families, "node_hwmon_temp_celsius")
    assert ("platform_coretemp_0", "temp1") not in temps
    assert ("platform_coretemp_0", "temp3") in temps
    families = collect(sensors=("fan", None))
    assert {n for f in families for s in f.samples
            if (n := s.labels.get("sensor", "")) and not n.startswith("fan")} == set()


def test_no_hwmon_class_is_no_data(tmp_path: Path) -> None:
    assert collect(tmp_path) == []


def test_unreadable_input_skips_that_value(monkeypatch: pytest.MonkeyPatch) -> None:
    real = hwmon.read_attribute_bytes

    def flaky(path: str | Path, size: int = 128, dir_fd: int | None = None) -> bytes:
        name = os.path.basename(path)
        if name == "temp2_input":
            raise OSError(errno.EIO, "Input/output error")
        if name == "fan2_input":
            raise OSError(errno.EAGAIN, "Resource temporarily unavailable")
        return real(path, size, dir_fd)

    monkeypatch.setattr(hwmon, "read_attribute_bytes", flaky)
    families = collect()
    temps = series(families, "node_hwmon_temp_celsius")
    assert ("platform_coretemp_0", "temp2") not in temps
    assert ("platform_coretemp_0", "temp1") in temps
    assert series(families, "node_hwmon_temp_max_celsius")[("platform_coretemp_0", "temp2")] == 84
    assert ("nct6779", "fan2") not in series(families, "node_hwmon_fan_rpm")


def test_dangling_chip_link_is_skipped(tmp_path: Path) -> None:
    shutil.copytree(SYS, tmp_path, symlinks=True, dirs_exist_ok=True)
    (tmp_path / "class/hwmon/hwmon9").symlink_to("../../devices/gone/hwmon9")
    assert encode_names(collect(tmp_path)) == encode_names(collect())


def encode_names(families: list[Metric]) -> list[str]:
    return sorted(f"{s.name}{sorted(s.labels.items())}" for f in families for s in f.samples)


def test_matches_node_exporter_on_the_fixture(node_exporter) -> None:
    # The freq sensor type (GPU clocks) arrived after 1.5: its series and its label.
    assert_matches_peer(node_exporter, "hwmon", [f"--path.sysfs={SYS}"], collect(), "node_hwmon_",
                        newer=lambda name, labels: "freq" in labels.get("sensor", "")
                        or name.startswith("node_hwmon_freq"))


def test_a_chip_registered_again_is_read_afresh(tmp_path: Path) -> None:
    """Chip names and sensor labels are kept while a chip's /sys/class/hwmon entry stays
    the same; a driver registering the chip again makes a new entry, read afresh."""
    sysfs = tmp_path / "sys"
    shutil.copytree(SYS, sysfs, symlinks=True)
    collector = HwmonCollector(sysfs, DeviceFilter(None, None), DeviceFilter(None, None))

    def labels() -> dict[tuple[str, str], str]:
        return {(s.labels["chip"], s.labels["sensor"]): s.labels["label"]
                for f in collector.collect() for s in f.samples
                if s.name == "node_hwmon_sensor_label"}

    before = labels()
    assert before[("platform_coretemp_0", "temp1")] == "Package id 0"
    chip = sysfs / "devices" / "platform" / "coretemp.0" / "hwmon" / "hwmon0"
    (chip / "temp1_label").write_text("Renamed\n")
    assert labels() == before  # the same registration: its labels are fixed
    entry = sysfs / "class" / "hwmon" / "hwmon0"
    again = entry.with_name("hwmon0.new")
    again.symlink_to(os.readlink(entry))
    again.replace(entry)  # a new node under the same name, as sysfs makes on re-registration
    assert labels()[("platform_coretemp_0", "temp1")] == "Renamed"
