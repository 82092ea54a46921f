"""Giving freed heap back to the system.

After a large collection (a big textfile parsed, then removed) Python frees its objects, but
glibc keeps the pages in its arenas: RSS stays at the peak. malloc_trim(0) hands back every
whole free page. It walks the heap (about a millisecond for this agent), so the renderer calls
maybe_trim() after a render, at most once every TRIM_EVERY seconds: no timer of its own;
and at once when the exposition shrank by SHRINK_BYTES since the last trim (a big textfile or
a remote host's series went), so RSS falls when the memory went, not up to a minute later.

Python's own small-object arenas are another matter: one goes back to the system only when
every block in it is free. After a burst of short-lived objects (a large textfile parsed),
CPython's free lists (up to 2 000 tuples of each size, dicts, floats) still hold blocks of the
burst, spread over its arenas, and the next long-lived objects are made from them: a few
hundred survivors then keep many megabytes. settle() after such a burst empties the lists.
"""

from __future__ import annotations

import ctypes
import gc
import threading
import time
from collections.abc import Callable

TRIM_EVERY = 60.0
SHRINK_BYTES = 1 << 20


def _libc() -> ctypes.CDLL | None:
    """The C library, as the process already has it: dlopen(NULL) sees the program's global
    symbols, libc's among them (ctypes.util.find_library would run ldconfig in a subprocess,
    and its imports alone cost ~1 MB of RSS)."""
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


def _load_trim() -> Callable[[int], int] | None:
    try:
        function = _libc().malloc_trim  # type: ignore[union-attr]
    except AttributeError:  # no C library, or not glibc (musl has no malloc_trim)
        return None
    function.argtypes, function.restype = [ctypes.c_size_t], ctypes.c_int
    return function


_trim = _load_trim()

# glibc's mallopt parameters. Set, they stop glibc raising both thresholds as it goes: after a
# 1 MB block (a large textfile's lines, a render's body) is freed, every later block up to
# that size would come from a thread's arena, and up to twice it stay at the arena's top,
# which neither free() nor malloc_trim() gives back: megabytes in each collector thread.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
TRIM_THRESHOLD = 128 << 10
MMAP_THRESHOLD = 256 << 10  # blocks this large are mapped alone and unmapped when freed
# One arena for every thread (glibc gives each new thread its own, up to 8 per core): each
# collector and render thread's arena kept its own free pages and partly used pages, ~0.4 MB
# of an idle agent's RSS. Python allocates under the GIL and small blocks come from its own
# allocator or glibc's per-thread cache, so threads hardly ever wait on the arena's lock.
ARENA_MAX = 1


def tune() -> bool:
    """Fixes glibc's thresholds and arena count (once, as the agent starts, before its
    threads); False where there is no glibc."""
    try:
        mallopt = _libc().mallopt  # type: ignore[union-attr]
    except AttributeError:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
                and mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                and mallopt(M_ARENA_MAX, ARENA_MAX))
_lock = threading.Lock()
_last = time.monotonic() - TRIM_EVERY  # the first render after start trims: start-up is over
_largest = 0  # the largest exposition rendered since the last trim


def trim() -> bool:
    """Return free heap pages to the system now; False where malloc_trim does not exist."""
    if _trim is None:
        return False
    _trim(0)
    return True


def maybe_trim(now: float | None = None, size: int = 0) -> bool:
    """trim() if TRIM_EVERY seconds passed since the last one, or if size (of what was just
    rendered) is SHRINK_BYTES below the largest rendered since; any thread may call it."""
    global _last, _largest
    now = time.monotonic() if now is None else now
    with _lock:
        _largest = max(_largest, size)
        if now - _last < TRIM_EVERY and _largest - size < SHRINK_BYTES:
            return False
        _last, _largest = now, size
    return trim()


def settle() -> None:
    """After a burst of short-lived objects, before long-lived ones are made: a full
    collection, which also empties the free lists (tens of milliseconds; a burst worth it
    costs far more)."""
    gc.collect()
