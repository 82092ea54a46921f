from __future__ import annotations

import ctypes
import dataclasses
import errno

import pytest
from prometheus_client.metrics_core import Metric

from agent.collectors import timex
from agent.collectors.timex import Timex, TimexCollector, adjtimex, timex_families
from tests.golden import assert_golden

# A clock disciplined by NTP, in nanosecond mode (STA_PLL | STA_NANO), with a PPS signal.
SYNCED = Timex(state=0, offset=-123456, freq=-1234567, maxerror=32000, esterror=1500,
               status=0x2001, constant=7, tick=10000, ppsfreq=655360, jitter=250000, shift=8,
               stabil=32768, jitcnt=3, calcnt=120, errcnt=1, stbcnt=2, tai=37)
# The same readings from a kernel in microsecond mode, and a clock never synchronized.
MICRO = dataclasses.replace(SYNCED, status=0x0001)
UNSYNCED = Timex(state=5, offset=0, freq=0, maxerror=16000000, esterror=16000000, status=0x40,
                 constant=2, tick=10000, ppsfreq=0, jitter=0, shift=0, stabil=0, jitcnt=0,
                 calcnt=0, errcnt=0, stbcnt=0, tai=0)

NAMES = {
    "node_timex_offset_seconds", "node_timex_frequency_adjustment_ratio",
    "node_timex_maxerror_seconds", "node_timex_estimated_error_seconds", "node_timex_status",
    "node_timex_loop_time_constant", "node_timex_tick_seconds",
    "node_timex_pps_frequency_hertz", "node_timex_pps_jitter_seconds",
    "node_timex_pps_shift_seconds", "node_timex_pps_stability_hertz",
    "node_timex_pps_jitter_total", "node_timex_pps_calibration_total",
    "node_timex_pps_error_total", "node_timex_pps_stability_exceeded_total",
    "node_timex_sync_status", "node_timex_tai_offset_seconds",
}
COUNTERS = {"node_timex_pps_jitter_total", "node_timex_pps_calibration_total",
            "node_timex_pps_error_total", "node_timex_pps_stability_exceeded_total"}


def values(families: list[Metric]) -> dict[str, float]:
    return {s.name: s.value for f in families for s in f.samples}


def test_metric_set_and_types() -> None:
    families = timex_families(SYNCED)
    assert set(values(families)) == NAMES
    assert {f"{f.name}_total" for f in families if f.type == "counter"} == COUNTERS


def test_scaling_in_nanosecond_mode() -> None:
    v = values(timex_families(SYNCED))
    assert v["node_timex_sync_status"] == 1
    assert v["node_timex_offset_seconds"] == -0.000123456
    assert v["node_timex_pps_jitter_seconds"] == 0.00025
    # freq, ppsfreq and stabil are ppm scaled by 2^16.
    assert v["node_timex_frequency_adjustment_ratio"] == 1 + -1234567 / 65536e6
    assert v["node_timex_pps_frequency_hertz"] == 1e-5
    assert v["node_timex_pps_stability_hertz"] == 5e-7
    # maxerror, esterror and tick are always in microseconds.
    assert v["node_timex_maxerror_seconds"] == 0.032
    assert v["node_timex_estimated_error_seconds"] == 0.0015
    assert v["node_timex_tick_seconds"] == 0.01
    assert v["node_timex_status"] == 8193
    assert v["node_timex_loop_time_constant"] == 7
    assert v["node_timex_pps_shift_seconds"] == 8
    assert v["node_timex_tai_offset_seconds"] == 37
    assert (v["node_timex_pps_jitter_total"], v["node_timex_pps_calibration_total"],
            v["node_timex_pps_error_total"], v["node_timex_pps_stability_exceeded_total"]) == (
        3, 120, 1, 2)


def test_offset_and_jitter_in_microsecond_mode() -> None:
    v = values(timex_families(MICRO))
    assert v["node_timex_offset_seconds"] == -0.123456
    assert v["node_timex_pps_jitter_seconds"] == 0.25
    assert v["node_timex_maxerror_seconds"] == 0.032  # unaffected by STA_NANO


@pytest.mark.parametrize(("state", "synced"), [(0, 1), (1, 1), (4, 1), (5, 0)])
def test_sync_status_is_0_only_for_time_error(state: int, synced: float) -> None:
    v = values(timex_families(dataclasses.replace(SYNCED, state=state)))
    assert v["node_timex_sync_status"] == synced


def test_golden() -> None:
    assert_golden(timex_families(SYNCED), "timex")
    assert_golden(timex_families(UNSYNCED), "timex_unsynced")


def test_struct_layout_matches_the_c_abi() -> None:
    if ctypes.sizeof(ctypes.c_long) == 8:
        assert ctypes.sizeof(timex._CTimex) == 208


def test_live_read() -> None:
    reading = adjtimex()
    assert reading.tick > 0
    assert 0 <= reading.state <= 5
    assert set(values(TimexCollector().collect())) == NAMES


def test_failed_call_raises_with_errno(monkeypatch: pytest.MonkeyPatch) -> None:
    class Refusing:
        def adjtimex(self, buf: object) -> int:
            ctypes.set_errno(errno.EPERM)
            return -1

    monkeypatch.setattr(timex, "_libc", Refusing)
    with pytest.raises(PermissionError, match="adjtimex"):
        adjtimex()


def test_the_same_clock_state_hands_out_the_same_families(monkeypatch) -> None:
    """An unchanged reading gives the very families of the previous collect (the renderer
    skips them at once); a changed one, families equal to a fresh build."""
    readings = [dataclasses.astuple(UNSYNCED), dataclasses.astuple(UNSYNCED),
                dataclasses.astuple(SYNCED)]
    monkeypatch.setattr(timex, "_adjtimex_fields", lambda: readings.pop(0))
    collector = TimexCollector()
    first = collector.collect()
    assert first == timex_families(UNSYNCED)
    assert collector.collect() is first
    assert collector.collect() == timex_families(SYNCED)


def test_the_fields_read_are_timex_in_order() -> None:
    """Each value lands in the Timex attribute of its name: struct timex read here by a call
    of the test's own, fields the clock does not change between two calls compared."""
    raw = timex._CTimex()
    assert ctypes.CDLL(None).adjtimex(ctypes.byref(raw)) != -1
    read = Timex(*timex._adjtimex_fields())
    for name in ("tick", "constant", "status", "shift", "stabil", "tai"):
        assert getattr(read, name) == getattr(raw, name), name
