"""Output regexes (SSH checks, remediation check commands) with the engine's own time limit,
off the event loop, so a catastrophic pattern on big output can never freeze the agent."""

from __future__ import annotations

import asyncio

import regex

from agent.pool import DaemonThreadPool

# How long one check's regex may run: a catastrophic pattern on big output gives up here.
REGEX_TIMEOUT = 1.0


def _search(pattern: str, output: bytes, timeout: float) -> bool | None:
    """True or False, or None when the match ran out of time. The regex engine releases the
    GIL while it matches (concurrent=True), so the event loop keeps turning meanwhile."""
    try:
        return regex.search(pattern, output.decode(errors="replace"), regex.MULTILINE,
                            timeout=timeout, concurrent=True) is not None
    except TimeoutError:
        return None


class OutputMatcher:
    """Runs checks' output regexes with the engine's own time limit, in a small pool of daemon
    threads of their own: never the loop's default executor (whose threads delay exit and
    which other work shares), and a slow pattern holds one of these threads at most
    REGEX_TIMEOUT."""

    def __init__(self, timeout: float = REGEX_TIMEOUT, workers: int = 2,
                 name: str = "ssh-regex") -> None:
        self.timeout = timeout
        self._pool = DaemonThreadPool(workers, name)

    async def matches(self, pattern: str, output: bytes) -> bool | None:
        return await asyncio.wrap_future(
            self._pool.submit(_search, pattern, output, self.timeout))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
