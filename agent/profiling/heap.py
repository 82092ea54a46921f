"""The top allocation sites of live memory, from tracemalloc."""

from __future__ import annotations

import tracemalloc

_OWN = (tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
        tracemalloc.Filter(False, "<unknown>"))


def top(limit: int) -> str | None:
    """The limit largest sites by live bytes, or None when tracemalloc is not tracing.
    Blocking (a snapshot copies every trace): run it off the event loop."""
    try:
        snapshot = tracemalloc.take_snapshot()
    except RuntimeError:
        return None
    stats = snapshot.filter_traces(_OWN).statistics("lineno")
    total = sum(stat.size for stat in stats)
    out = [f"{total} bytes live in {len(stats)} allocation sites; top {min(limit, len(stats))}:",
           f"{'bytes':>12} {'blocks':>8}  site"]
    for stat in stats[:limit]:
        frame = stat.traceback[0]
        out.append(f"{stat.size:>12} {stat.count:>8}  {frame.filename}:{frame.lineno}")
    return "\n".join(out) + "\n"
