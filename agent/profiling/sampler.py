"""A statistical CPU profiler of every thread, in collapsed (folded) stack format.

Runs in a thread of its own: at each tick it reads every other thread's current frame
(sys._current_frames) and counts the stack of each thread that used CPU since the previous
tick, so threads blocked in a wait do not drown the busy ones. Output lines are
`thread;module:function;...;module:function COUNT`, root first, as flamegraph.pl and
speedscope read them.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from types import FrameType


def frame_name(frame: FrameType) -> str:
    """module:qualified.function, without line numbers, so that samples aggregate."""
    module = frame.f_globals.get("__name__", "?")
    return f"{module}:{frame.f_code.co_qualname}".replace(";", ":")


def fold(thread_name: str, frame: FrameType | None) -> str:
    names = []
    while frame is not None:
        names.append(frame_name(frame))
        frame = frame.f_back
    names.append(thread_name.replace(";", ":"))
    return ";".join(reversed(names))


def thread_cpu_ns(native_id: int | None) -> int | None:
    """CPU time a thread has used, from Linux's per-thread CPU clock addressed by thread id
    (so asking about a thread that has just ended fails cleanly); None when unknown."""
    if native_id is None:
        return None
    try:
        return time.clock_gettime_ns((~native_id << 3) | 6)  # CPUCLOCK_PERTHREAD | SCHED
    except OSError:
        return None


def sample(seconds: float, hz: float, stop: threading.Event) -> Counter[str]:
    """Blocking: samples every thread but the caller's, hz times a second, for seconds
    (or until stop is set). A thread seen for the first time only sets its baseline."""
    me = threading.get_ident()
    counts: Counter[str] = Counter()
    last_cpu: dict[int, int | None] = {}
    interval = 1.0 / hz
    deadline = time.monotonic() + seconds
    tick = time.monotonic()
    while tick < deadline and not stop.wait(max(0.0, tick - time.monotonic())):
        threads = {thread.ident: thread for thread in threading.enumerate()}
        for ident, frame in sys._current_frames().items():
            if ident == me:
                continue
            thread = threads.get(ident)
            cpu = thread_cpu_ns(thread.native_id if thread else None)
            previous = last_cpu.get(ident)
            last_cpu[ident] = cpu
            if cpu is None or (previous is not None and cpu > previous):
                counts[fold(thread.name if thread else f"thread-{ident}", frame)] += 1
        # Falls behind rather than bursting when a sample takes longer than the interval.
        tick = max(tick + interval, time.monotonic())
    return counts


def folded(counts: Counter[str]) -> str:
    return "".join(f"{stack} {count}\n" for stack, count in counts.most_common())
