"""Text dumps of every asyncio task and every thread, outermost frame first.

Frames show file:line and the function, never source text: reading source files would be
disk I/O on the event loop.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from types import FrameType
from typing import Any


def _line(frame: FrameType) -> str:
    return f"  {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_qualname}"


def await_chain(coro: Any) -> list[FrameType]:
    """The frames of a coroutine and of what it awaits, down to the innermost one."""
    frames = []
    while coro is not None:
        frame = next((getattr(coro, a) for a in ("cr_frame", "gi_frame", "ag_frame")
                      if getattr(coro, a, None) is not None), None)
        if frame is None:
            break
        frames.append(frame)
        coro = next((getattr(coro, a) for a in ("cr_await", "gi_yieldfrom", "ag_await")
                     if getattr(coro, a, None) is not None), None)
    return frames


def _state(task: asyncio.Task[Any]) -> str:
    if task.cancelled():
        return "cancelled"
    if task.done():
        return "done"
    return "cancelling" if task.cancelling() else "pending"


def dump_tasks() -> str:
    """Must run on the event loop whose tasks it shows."""
    tasks = sorted(asyncio.all_tasks(), key=lambda task: task.get_name())
    out = [f"{len(tasks)} tasks"]
    for task in tasks:
        out += ["", f"Task {task.get_name()!r} {_state(task)}"]
        out += [_line(frame) for frame in await_chain(task.get_coro())]
    return "\n".join(out) + "\n"


def thread_frames(frame: FrameType | None) -> list[FrameType]:
    frames = []
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    return frames[::-1]


def dump_threads() -> str:
    threads = {thread.ident: thread for thread in threading.enumerate()}
    current = sys._current_frames()
    out = [f"{len(current)} threads"]
    for ident, frame in sorted(current.items()):
        thread = threads.get(ident)
        name = thread.name if thread else "?"
        daemon = " daemon" if thread is not None and thread.daemon else ""
        native = thread.native_id if thread else "?"
        out += ["", f"Thread {name!r} (ident {ident}, tid {native}){daemon}"]
        out += [_line(f) for f in thread_frames(frame)]
    return "\n".join(out) + "\n"
