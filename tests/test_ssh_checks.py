"""ssh.checks[].regex bounded: a catastrophic pattern on big output times out on its own and
never freezes the event loop."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from agent.config import SshCheck
from agent.matching import OutputMatcher
from agent.ssh import probes
from agent.ssh.connections import Completed

# Backtracks exponentially in the number of commas before giving up (no "P" anywhere).
CATASTROPHIC = r"^(.*?,){11}P"
BIG_OUTPUT = b"ok\n" * 100_000 + b"1," * 28


class Canned:
    """A session whose command printed the given output (the SSH part is tested elsewhere)."""

    def __init__(self, stdout: bytes) -> None:
        self.stdout = stdout

    async def run(self, command: str, timeout: float) -> Completed:
        return Completed(0, self.stdout, b"")


async def check(regex: str, stdout: bytes, matcher: OutputMatcher
                ) -> probes.CheckResult:
    spec = SshCheck.model_validate({"name": "c", "command": "x", "regex": regex})
    session: Any = Canned(stdout)
    return await probes.run_check(session, spec, 10, matcher)


async def test_a_catastrophic_regex_times_out_while_the_loop_turns() -> None:
    matcher = OutputMatcher(timeout=0.5)
    try:
        loop = asyncio.get_running_loop()
        order: list[str] = []
        loop.call_later(0.05, order.append, "timer")
        result = await asyncio.wait_for(check(CATASTROPHIC, BIG_OUTPUT, matcher), 30)
        order.append("check")
        assert not result.success and result.failure == "timeout", result
        assert "did not finish within 0.5 s" in (result.error or "")
        assert order == ["timer", "check"], "the loop serviced a timer while the regex ran"
        assert all(t.daemon for t in threading.enumerate() if t.name.startswith("ssh-regex"))
    finally:
        matcher.close()


async def test_regex_results() -> None:
    matcher = OutputMatcher()
    try:
        assert (await check(r"^active$", b"inactive\nactive\n", matcher)).success
        result = await check(r"^active$", b"inactive\n", matcher)
        assert not result.success and result.failure == "output"
        assert (await check(r"caf.", "café".encode(), matcher)).success
    finally:
        matcher.close()
