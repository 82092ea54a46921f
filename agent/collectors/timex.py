"""timex: node_timex_* from the kernel clock discipline, read with adjtimex(2) as node_exporter.

The syscall is made in read-only mode (modes = 0) by adjtimex(); timex_families() turns its
raw fields into metrics and is pure.
"""

from __future__ import annotations

import ctypes
import functools
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from prometheus_client.metrics_core import Metric

from agent.collectors.common import counter, gauge

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

TIME_ERROR = 5  # adjtimex's return value while the clock is not synchronized
STA_NANO = 0x2000  # status bit: offset and jitter are in nanoseconds, not microseconds
NANOSECONDS = 1_000_000_000.0
MICROSECONDS = 1_000_000.0
PPM16FRAC = 1_000_000.0 * 65536.0  # freq, ppsfreq and stabil are ppm with a 16-bit fraction


@dataclass(frozen=True)
class Timex:
    """The fields of struct timex that node_exporter reports, plus the call's return value."""

    state: int
    offset: int
    freq: int
    maxerror: int
    esterror: int
    status: int
    constant: int
    tick: int
    ppsfreq: int
    jitter: int
    shift: int
    stabil: int
    jitcnt: int
    calcnt: int
    errcnt: int
    stbcnt: int
    tai: int


class _Timeval(ctypes.Structure):
    _fields_: ClassVar = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _CTimex(ctypes.Structure):
    """struct timex from <sys/timex.h>; ctypes adds the same alignment padding as C."""

    _fields_: ClassVar = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_reserved", ctypes.c_int * 11),
    ]


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


_FIELDS = tuple(name for name in Timex.__dataclass_fields__ if name != "state")


def _adjtimex_fields() -> tuple[int, ...]:
    """Timex's fields in order, state first; raises OSError if the call fails."""
    raw = _CTimex()  # zeroed, so modes = 0: read only
    state = _libc().adjtimex(ctypes.byref(raw))
    if state == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"adjtimex: {os.strerror(err)}")
    return (state, *(getattr(raw, name) for name in _FIELDS))


def adjtimex() -> Timex:
    """Read the kernel's clock state; raises OSError if the call fails."""
    return Timex(*_adjtimex_fields())


class TimexCollector:
    def __init__(self) -> None:
        # The last fields read and their families: handed out again while the clock state
        # reads the same (an unsynchronised clock's never changes), skipped at once by the
        # renderer.
        self._last: tuple[tuple[int, ...], list[Metric]] | None = None

    def collect(self) -> list[Metric]:
        fields = _adjtimex_fields()
        if self._last is not None and self._last[0] == fields:
            return self._last[1]
        families = timex_families(Timex(*fields))
        self._last = (fields, families)
        return families


def timex_families(t: Timex) -> list[Metric]:
    """node_exporter 1.5's metrics, units and scaling."""
    divisor = NANOSECONDS if t.status & STA_NANO else MICROSECONDS
    gauges = [
        ("sync_status", "Is clock synchronized to a reliable server (1 = yes, 0 = no).",
         0.0 if t.state == TIME_ERROR else 1.0),
        ("offset_seconds", "Time offset in between local system and reference clock.",
         t.offset / divisor),
        ("frequency_adjustment_ratio", "Local clock frequency adjustment.",
         1 + t.freq / PPM16FRAC),
        ("maxerror_seconds", "Maximum error in seconds.", t.maxerror / MICROSECONDS),
        ("estimated_error_seconds", "Estimated error in seconds.", t.esterror / MICROSECONDS),
        ("status", "Value of the status array bits.", float(t.status)),
        ("loop_time_constant", "Phase-locked loop time constant.", float(t.constant)),
        ("tick_seconds", "Seconds between clock ticks.", t.tick / MICROSECONDS),
        ("pps_frequency_hertz", "Pulse per second frequency.", t.ppsfreq / PPM16FRAC),
        ("pps_jitter_seconds", "Pulse per second jitter.", t.jitter / divisor),
        ("pps_shift_seconds", "Pulse per second interval duration.", float(t.shift)),
        ("pps_stability_hertz",
         "Pulse per second stability, average of recent frequency changes.",
         t.stabil / PPM16FRAC),
        ("tai_offset_seconds", "International Atomic Time (TAI) offset.", float(t.tai)),
    ]
    counters = [
        ("pps_jitter_total", "Pulse per second count of jitter limit exceeded events.", t.jitcnt),
        ("pps_calibration_total", "Pulse per second count of calibration intervals.", t.calcnt),
        ("pps_error_total", "Pulse per second count of calibration errors.", t.errcnt),
        ("pps_stability_exceeded_total",
         "Pulse per second count of stability limit exceeded events.", t.stbcnt),
    ]
    families: list[Metric] = [gauge(f"node_timex_{name}", help_text, value)
                              for name, help_text, value in gauges]
    families += [counter(f"node_timex_{name}", help_text, float(value))
                 for name, help_text, value in counters]
    return families


def create(context: Context, settings: Any) -> TimexCollector:
    return TimexCollector()
