"""Running an action or a check command: argv (a shell only when asked), a cleared
environment, output bounded, killed with its whole process group at its timeout."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from dataclasses import dataclass

# Actions run with nothing of the agent's environment (no credentials, no proxies), only a
# search path for the usual system tools.
CLEAN_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "LANG": "C.UTF-8"}


@dataclass(frozen=True)
class Outcome:
    exit_status: int | None  # None: killed at the timeout, or it could not start
    stdout: bytes
    stderr: bytes
    duration: float
    error: str | None = None  # "timeout", or why it could not start

    @property
    def ok(self) -> bool:
        return self.error is None and self.exit_status == 0

    def tail(self, limit: int = 512) -> str:
        """The end of the output, for a log line or an alert annotation."""
        text = (self.stdout + self.stderr).decode(errors="replace").strip()
        return text[-limit:]


async def _bounded(stream: asyncio.StreamReader | None, limit: int) -> bytes:
    """Keeps the last `limit` bytes and drains the rest, so a chatty command never blocks."""
    if stream is None:
        return b""
    kept = bytearray()
    while chunk := await stream.read(65536):
        kept += chunk
        if len(kept) > limit:
            del kept[:len(kept) - limit]
    return bytes(kept)


async def run_local(command: list[str] | str, shell: bool, timeout: float,
                    limit: int = 65536) -> Outcome:
    start = time.monotonic()
    try:
        if shell:
            assert isinstance(command, str)
            process = await asyncio.create_subprocess_exec(
                "/bin/sh", "-c", command, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env=CLEAN_ENV, start_new_session=True)
        else:
            assert isinstance(command, list)
            process = await asyncio.create_subprocess_exec(
                *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=CLEAN_ENV, start_new_session=True)
    except OSError as exc:
        return Outcome(None, b"", b"", time.monotonic() - start,
                       f"cannot start: {exc.strerror or exc}")
    reading = asyncio.gather(_bounded(process.stdout, limit), _bounded(process.stderr, limit))
    try:
        async with asyncio.timeout(timeout):
            stdout, stderr = await reading
            await process.wait()
    except (TimeoutError, asyncio.CancelledError) as exc:
        _kill_group(process.pid)
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError, ProcessLookupError):
            await process.wait()
        if isinstance(exc, asyncio.CancelledError):
            raise
        return Outcome(None, b"", b"", time.monotonic() - start, "timeout")
    return Outcome(process.returncode, stdout, stderr, time.monotonic() - start)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
