"""The logind collector against a real dbus-daemon serving a stand-in logind
(tests/logind_bus.py), and against node_exporter's own logind collector on that same bus."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics_core import Metric

from agent.collectors.logind import LogindCollector, session_from_properties
from tests.golden import FIXTURES, assert_golden
from tests.logind_bus import logind_bus
from tests.test_differential import compare

SPEC = json.loads((FIXTURES / "logind" / "sessions.json").read_text())

@pytest.fixture(scope="module")
def bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with logind_bus(tmp_path_factory.mktemp("bus"), SPEC) as address:
        yield address


def counts(families: list[Metric]) -> dict[tuple[str, str, str, str], float]:
    return {(s.labels["seat"], s.labels["remote"], s.labels["type"], s.labels["class"]): s.value
            for f in families for s in f.samples}


def test_sessions_by_seat_remote_type_and_class(bus: str) -> None:
    families = LogindCollector(bus).collect()
    found = counts(families)
    # Every known remote/type/class combination for both seats and the empty one.
    assert len(found) == 2 * 7 * 5 * 3
    assert {k: v for k, v in found.items() if v} == {
        ("seat0", "false", "x11", "user"): 1,
        ("seat0", "false", "wayland", "greeter"): 1,
        ("", "true", "tty", "user"): 2,
        ("", "true", "unspecified", "background"): 1,
        # Unknown type and class count as other.
        ("seat1", "false", "other", "other"): 1,
    }
    # Sessions without a Class, with a Type that is not a string, without Remote, or on a
    # seat ListSeats does not name are not counted.
    assert sum(found.values()) == 6
    assert_golden(families, "logind")


def test_without_a_bus_the_run_fails_with_one_line(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="unable to connect to dbus"):
        LogindCollector(f"unix:path={tmp_path}/absent", timeout=5).collect()


def test_a_bus_without_logind_fails_the_run(tmp_path: Path) -> None:
    with logind_bus(tmp_path, {"seats": [], "sessions": [], "fail_seats": True}) as address, \
            pytest.raises(RuntimeError, match="unable to get seats"):
        LogindCollector(address).collect()


def test_no_sessions_still_reports_zeros(tmp_path: Path) -> None:
    with logind_bus(tmp_path, {"seats": [], "sessions": []}) as address:
        found = counts(LogindCollector(address).collect())
    assert len(found) == 70 and set(found.values()) == {0}
    assert {seat for seat, *_ in found} == {""}


def test_remote_is_shown_as_a_boolean() -> None:
    session = session_from_properties("", True, "tty", "user")
    assert session is not None and session.remote == "true"
    assert session_from_properties("", False, "tty", None) is None


def test_matches_node_exporter_on_the_same_bus(bus: str, node_exporter: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.config import Config

    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", bus)
    url = node_exporter("--collector.disable-defaults", "--collector.logind")
    config = Config.model_validate({"collectors": {"logind": {"enabled": True}}})
    assert os.environ["DBUS_SYSTEM_BUS_ADDRESS"] == bus
    compare("logind", config, url)
