"""The systemd collector against a real dbus-daemon serving a stand-in systemd manager
(tests/systemd_bus.py), and against node_exporter's own systemd collector on that same bus."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics_core import Metric

from agent.collectors.systemd import (
    Options,
    Readings,
    SystemdCollector,
    Unit,
    parse_version,
    systemd_families,
    virtualization_type,
)
from tests.golden import FIXTURES, assert_golden
from tests.systemd_bus import systemd_bus
from tests.test_differential import compare

SPEC = json.loads((FIXTURES / "systemd" / "units.json").read_text())
ALL = Options(task_metrics=True, restarts_metrics=True, start_time_metrics=True)

@pytest.fixture(scope="module")
def bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with systemd_bus(tmp_path_factory.mktemp("bus"), SPEC) as address:
        yield address


def values(families: list[Metric], name: str) -> dict[tuple[str, ...], float]:
    return {tuple(s.labels.values()): s.value
            for f in families for s in f.samples if s.name == name}


def test_golden_with_every_option(bus: str) -> None:
    families = SystemdCollector(ALL, bus).collect()
    assert_golden(families, "systemd")


def test_unit_states_and_summary(bus: str) -> None:
    families = SystemdCollector(Options(), bus).collect()
    state = values(families, "node_systemd_unit_state")
    assert state[("nginx.service", "failed", "forking")] == 1
    assert state[("nginx.service", "active", "forking")] == 0
    assert state[("ssh.service", "activating", "notify")] == 1
    # A unit in a state outside the five (reloading) has every one of them at 0.
    assert [v for (n, _, _), v in state.items() if n == "postgresql.service"] == [0] * 5
    names = {name for name, _, _ in state}
    # Excluded by default (device, mount, slice) and not loaded (ghost) are left out ...
    assert not names & {"home.mount", "system.slice", "dev-sda1.device", "ghost.service"}
    assert "multi-user.target" in names
    # ... but the summary counts every unit the manager lists, by its active state.
    assert values(families, "node_systemd_units") == {
        ("activating",): 1, ("active",): 10, ("deactivating",): 1, ("failed",): 1,
        ("inactive",): 2, ("reloading",): 1}
    assert values(families, "node_systemd_system_running") == {(): 0}
    assert values(families, "node_systemd_version") == {("252.22-1~deb12u1",): 252.22}
    # Off unless enabled, as in node_exporter.
    exposed = {f.name for f in families}
    assert not exposed & {"node_systemd_service_restart", "node_systemd_unit_tasks_current",
                          "node_systemd_unit_start_time_seconds"}


def test_socket_activation_and_timers(bus: str) -> None:
    families = SystemdCollector(Options(), bus).collect()
    assert values(families, "node_systemd_socket_accepted_connections_total") == {
        ("docker.socket",): 42, ("old.socket",): 7}
    assert values(families, "node_systemd_socket_current_connections") == {
        ("docker.socket",): 1, ("old.socket",): 0}
    # NRefused exists from systemd 239 on: only where the manager has it.
    assert values(families, "node_systemd_socket_refused_connections_total") == {
        ("docker.socket",): 3}
    assert values(families, "node_systemd_timer_last_trigger_seconds") == {
        ("logrotate.timer",): 1717977600.5, ("never.timer",): 0}


def test_include_and_exclude_are_anchored(bus: str) -> None:
    options = Options(unit_include=r"(nginx|ssh)\.service|.+\.mount", unit_exclude="ssh.*")
    families = SystemdCollector(options, bus).collect()
    assert {n for n, _, _ in values(families, "node_systemd_unit_state")} == {
        "nginx.service", "home.mount"}
    assert values(families, "node_systemd_unit_state")[("home.mount", "active", "ext4")] == 1
    # 'cron' alone does not match 'cron.service' once anchored.
    families = SystemdCollector(Options(unit_include="cron"), bus).collect()
    assert values(families, "node_systemd_unit_state") == {}


def test_tasks_skip_the_unlimited_value(bus: str) -> None:
    families = SystemdCollector(ALL, bus).collect()
    assert values(families, "node_systemd_unit_tasks_max") == {
        ("cron.service",): 4915, ("postgresql.service",): 4915, ("ssh.service",): 4915}
    assert ("nginx.service",) not in values(families, "node_systemd_unit_tasks_current")
    start = values(families, "node_systemd_unit_start_time_seconds")
    assert start[("cron.service",)] == 1718000000.123456
    assert start[("nginx.service",)] == 0  # not active


def test_without_a_bus_the_run_fails_with_one_line(tmp_path: Path) -> None:
    collector = SystemdCollector(Options(), f"unix:path={tmp_path}/absent", timeout=5)
    with pytest.raises(RuntimeError, match="couldn't get dbus connection"):
        collector.collect()


def test_a_bus_without_systemd_fails_the_run(tmp_path: Path) -> None:
    with systemd_bus(tmp_path, {"units": []}) as address:
        # The stand-in answers ListUnits with nothing: only the summary and version remain.
        families = SystemdCollector(Options(), address).collect()
        assert values(families, "node_systemd_version") == {("",): 0}
        assert values(families, "node_systemd_virtualization_info") == {("unknown",): 1}
        assert "node_systemd_system_running" not in {f.name for f in families}


def readings(version: str | None, state: str | None = "running") -> Readings:
    return Readings(version=version, virtualization="", system_state=state,
                    units=[Unit("a.timer", "loaded", "active", "/a")],
                    properties={("a.timer", "Timer", "LastTriggerUSec"): 5_000_000})


def test_old_managers_have_no_system_state_or_timers() -> None:
    families = systemd_families(readings("v211", None), Options())
    exposed = {f.name for f in families}
    assert "node_systemd_system_running" not in exposed
    assert "node_systemd_timer_last_trigger_seconds" not in exposed
    assert values(families, "node_systemd_version") == {("v211",): 211}
    families = systemd_families(readings("255"), Options())
    assert values(families, "node_systemd_system_running") == {(): 1}
    assert values(families, "node_systemd_timer_last_trigger_seconds") == {("a.timer",): 5}
    with pytest.raises(RuntimeError, match="system state"):
        systemd_families(readings("255", None), Options())


@pytest.mark.parametrize(("text", "parsed"), [
    ("252.22-1~deb12u1", (252.22, "252.22-1~deb12u1")),
    ("245.4-4ubuntu3.22", (245.4, "245.4-4ubuntu3.22")),
    ("v256-rc3", (256.0, "v256-rc3")),
    ("12", (0.0, "")),
    (None, (0.0, "")),
])
def test_version(text: str | None, parsed: tuple[float, str]) -> None:
    assert parse_version(text) == parsed


def test_virtualization() -> None:
    assert [virtualization_type(v) for v in ("kvm", "", None)] == ["kvm", "none", "unknown"]


def test_matches_node_exporter_on_the_same_bus(bus: str, node_exporter: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.config import Config

    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", bus)
    flags = ["--collector.disable-defaults", "--collector.systemd",
             "--collector.systemd.enable-task-metrics",
             "--collector.systemd.enable-restarts-metrics",
             "--collector.systemd.enable-start-time-metrics",
             # Debian's build adds 'target' to the default exclude; upstream's is ours.
             r"--collector.systemd.unit-exclude=.+\.(automount|device|mount|scope|slice)"]
    url = node_exporter(*flags)
    config = Config.model_validate({"collectors": {"systemd": {
        "enabled": True, "enable_task_metrics": True, "enable_restarts_metrics": True,
        "enable_start_time_metrics": True}}})
    assert os.environ["DBUS_SYSTEM_BUS_ADDRESS"] == bus
    # node_systemd_virtualization_info is newer than 1.5: compared without it.
    compare("systemd", config, url, ignore=("node_systemd_virtualization_info",))


def test_many_units_do_not_overrun_the_bus_socket(tmp_path: Path) -> None:
    # Hundreds of property calls at once once failed with EAGAIN on the socket's write.
    units = [{"name": f"svc{i}.service", "active": "active", "properties": {
        "Service": {"Type": "simple", "NRestarts": i, "TasksCurrent": 1, "TasksMax": 9}}}
        for i in range(500)]
    spec = {"manager": {"Version": "252", "SystemState": "running"}, "units": units}
    with systemd_bus(tmp_path, spec) as address:
        families = SystemdCollector(Options(task_metrics=True, restarts_metrics=True),
                                    address).collect()
    assert len(values(families, "node_systemd_service_restart_total")) == 500
    assert values(families, "node_systemd_service_restart_total")[("svc499.service",)] == 499
