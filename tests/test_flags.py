"""node_exporter's command line: its flag names reach the same settings, its collector
boundaries hold, and what hostagent does not have is an error naming it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.agent import build_collector
from agent.cli import main, parser
from agent.collectors.catalog import BY_NAME
from agent.config import Config, load
from agent.flags import overrides

COMMAND = [sys.executable, "-m", "agent"]


def config_from(*argv: str) -> Config:
    return load(None, overrides(parser().parse_args(["run", *argv])))


def test_a_node_exporter_exec_start_line_runs_unchanged(tmp_path: Path) -> None:
    config = config_from(
        "--web.listen-address=127.0.0.1:9100", "--web.telemetry-path=/node",
        "--web.disable-exporter-metrics", "--path.procfs=/host/proc", "--path.sysfs=/host/sys",
        "--path.rootfs=/host", "--path.udev.data=/host/run/udev/data", "--log.level=debug",
        "--log.format=json", f"--collector.textfile.directory={tmp_path}",
        "--collector.filesystem.mount-points-exclude=^/(sys|proc)($|/)",
        "--collector.netdev.device-include=^eth", "--collector.netstat.fields=.*",
        "--no-collector.netclass.ignore-invalid-speed", "--collector.diskstats.device-exclude=^x",
        "--collector.vmstat.fields", "^pg")
    assert config.web.listen_address == "127.0.0.1:9100"
    assert config.web.telemetry_path == "/node" and config.web.disable_exporter_metrics
    assert config.paths.procfs == Path("/host/proc") and config.paths.rootfs == Path("/host")
    assert config.paths.udev_data == Path("/host/run/udev/data")
    assert config.logging.level == "debug" and config.logging.format == "json"
    assert config.collectors.textfile.directory == tmp_path
    assert config.collectors.filesystem.mount_points_exclude == "^/(sys|proc)($|/)"
    assert config.collectors.netdev.device_include == "^eth"
    assert config.collectors.netdev.device_exclude is None
    assert config.collectors.netstat.fields == ".*"
    assert config.collectors.netclass.ignore_invalid_speed is False
    assert config.collectors.diskstats.device_exclude == "^x"
    assert config.collectors.vmstat.fields == "^pg"


@pytest.mark.parametrize("argv", [["--collector.netclass.ignore-invalid-speed"],
                                  ["--collector.netclass.ignore-invalid-speed=true"]])
def test_boolean_settings_take_kingpin_forms(argv: list[str]) -> None:
    assert config_from(*argv).collectors.netclass.ignore_invalid_speed is True


@pytest.mark.parametrize("flag", ["--collector.nosuchthing", "--no-collector.nosuchthing",
                                  "--collector.cpu.nosuchsetting=1", "--web.systemd-socket"])
def test_a_flag_hostagent_does_not_have_is_exit_2_naming_it(
        flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run", flag])
    assert info.value.code == 2
    assert flag.split("=")[0] in capsys.readouterr().err


def test_a_bad_value_names_its_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run", "--collector.cpu.interval=soon"])
    assert info.value.code == 2
    assert "--collector.cpu.interval" in capsys.readouterr().err


def test_a_bad_regex_names_its_setting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["collect", "--once", "--collector.netstat.fields=("]) == 2
    # The flag typed, not the configuration key it sets.
    assert capsys.readouterr().err.startswith(
        "--collector.netstat.fields: invalid regular expression")


def enabled(config: Config) -> set[str]:
    return {name for name in BY_NAME if config.collectors.get(name).enabled}


def test_node_exporter_collector_names_and_the_older_aliases() -> None:
    assert enabled(config_from("--collector.disable-defaults", "--collector.meminfo")) \
        == {"meminfo"}
    assert enabled(config_from("--collector.disable-defaults", "--collector.system")) \
        == {"stat", "time", "uname", "os", "filefd", "pressure"}
    assert enabled(config_from("--collector.disable-defaults", "--collector.load")) \
        == {"loadavg"}
    everything = enabled(config_from())
    assert enabled(config_from("--no-collector.uname")) == everything - {"uname"}
    # A collector's own name wins over the alias that covers it.
    assert enabled(config_from("--no-collector.system", "--collector.time")) \
        == everything - {"stat", "uname", "os", "filefd", "pressure"}


def test_old_yaml_keys_stand_for_the_collectors_they_cover(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text("collectors:\n  system: {interval: 30}\n  time: {interval: 5}\n"
                    "  memory: {enabled: false}\n")
    config = load(path)
    assert config.collectors.stat.interval == 30 and config.collectors.uname.interval == 30
    assert config.collectors.time.interval == 5
    assert not config.collectors.meminfo.enabled


def series_names(argv: list[str]) -> set[str]:
    result = subprocess.run([*COMMAND, "collect", "--once", *argv], capture_output=True,
                            text=True, timeout=60)
    return {s.name for f in text_string_to_metric_families(result.stdout) for s in f.samples}


def test_no_collector_uname_drops_only_the_uname_series() -> None:
    base = ["--collector.disable-defaults", "--collector.system", "--collector.loadavg"]
    everything = series_names(base)
    without = series_names([*base, "--no-collector.uname"])
    assert "node_uname_info" in everything and "node_load1" in everything
    assert everything - without == {"node_uname_info"}


def test_help_lists_every_flag_with_its_default_grouped_per_collector() -> None:
    result = subprocess.run([*COMMAND, "run", "--help"], capture_output=True, text=True,
                            timeout=30, env={**os.environ, "COLUMNS": "200"})
    out = result.stdout
    assert result.returncode == 0
    for name, declaration in BY_NAME.items():
        state = "enabled" if declaration.default else "disabled"
        assert f"collector {name} (default: {state}):" in out
        assert f"--collector.{name} " in out
    assert "--collector.filesystem.mount-points-exclude VALUE" in out
    assert "(default: 15.0)" in out and "--web.telemetry-path VALUE" in out


def test_filesystem_remembers_hung_mounts_across_a_rebuild(tmp_path: Path) -> None:
    """A reload builds a new filesystem collector: it must not call statvfs again on a
    mount whose earlier call still hangs."""
    proc = tmp_path / "proc"
    (proc / "1").mkdir(parents=True)
    (proc / "1" / "mountinfo").write_text("1 0 8:1 / / rw - ext4 /dev/sda1 rw\n"
                                          "2 1 0:40 / /mnt/x rw - nfs nfs:/x rw\n")
    config = config_from(f"--path.procfs={proc}", "--collector.filesystem.timeout=0.5",
                         "--collector.filesystem.mount-timeout=0.1")
    release = threading.Event()
    calls: list[str] = []

    def statvfs(path: str) -> object:
        calls.append(path)
        if path == "/mnt/x":
            release.wait(10)
        return os.statvfs("/")

    state: dict[str, dict[str, object]] = {}
    try:
        for _ in range(3):  # the first build and two reloads
            collector = build_collector("filesystem", config, state=state)
            collector._statvfs = statvfs  # type: ignore[attr-defined]
            families = {f.name: f for f in collector.collect()}
            errors = {s.labels["mountpoint"]: s.value
                      for s in families["node_filesystem_device_error"].samples}
            assert errors == {"/": 0.0, "/mnt/x": 1.0}
        assert calls.count("/mnt/x") == 1
    finally:
        release.set()
