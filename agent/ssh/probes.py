"""The probes of one round on one target, and the families that report them.

Modules: `login` (reachability and login: a new connection, or a no-op command on the kept
one), `checks` (named commands with an expected exit status and optional output regex) and
`node` (the host's node_* series, see remote_node). Families are built without the target's
labels; the exposition adds them for /metrics, /probe serves them as they are.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from agent.exposition.compressed import CompressedFamilies
from agent.matching import OutputMatcher
from agent.ssh import remote_node
from agent.ssh.connections import REASONS, ProbeError, Session

if TYPE_CHECKING:
    from agent.config import SshCheck

NOOP = "exit 0"


@dataclass(frozen=True)
class CheckResult:
    success: bool
    exit_status: int | None = None
    failure: str | None = None  # a reason from REASONS
    error: str | None = None


async def run_check(session: Session, check: SshCheck, timeout: float,
                    matcher: OutputMatcher) -> CheckResult:
    try:
        done = await session.run(check.command, timeout)
    except ProbeError as exc:
        return CheckResult(False, None, exc.reason, str(exc))
    if done.exit_status != check.expect_status:
        detail = done.stderr.decode(errors="replace").strip().splitlines()[:1]
        return CheckResult(False, done.exit_status, "command",
                           f"exit status {done.exit_status}, expected {check.expect_status}"
                           + (f": {detail[0]}" if detail else ""))
    if check.regex is not None:
        matched = await matcher.matches(check.regex, done.stdout)
        if matched is None:
            return CheckResult(False, done.exit_status, "timeout",
                               f"output regex {check.regex!r} did not finish within "
                               f"{matcher.timeout:g} s")
        if not matched:
            return CheckResult(False, done.exit_status, "output",
                               f"output does not match {check.regex!r}")
    return CheckResult(True, done.exit_status)


async def run_node(session: Session, node: remote_node.RemoteNode, timeout: float,
                   executor: Executor | None = None, compress: bool = False
                   ) -> tuple[Metric, ...] | CompressedFamilies:
    """The node_* families, parsed in a thread of `executor` (and compressed there when `compress`:
    the objects are dropped before the round ends). Raises ProbeError."""
    marker = remote_node.new_marker()
    done = await session.run(remote_node.command(marker), timeout)
    output = done.stdout.decode(errors="replace")
    if marker not in output:
        detail = done.stderr.decode(errors="replace").strip().splitlines()[:1]
        raise ProbeError("command", f"node command failed (exit status {done.exit_status})"
                         + (f": {detail[0]}" if detail else ""))
    def parse() -> tuple[Metric, ...] | CompressedFamilies:
        families = node.families(remote_node.split_sections(output, marker))
        return CompressedFamilies(families) if compress else tuple(families)

    try:
        return await asyncio.get_running_loop().run_in_executor(executor, parse)
    except ValueError as exc:
        raise ProbeError("output", f"node output: {exc}") from None


def login_families(up: bool, duration: float, failure: str | None, connection_open: bool,
                   handshakes: int) -> list[Metric]:
    failures = GaugeMetricFamily(
        "hostagent_ssh_failure", "Why the target's last probe failed: 1 for the reason, "
        "0 for the others; all 0 when it succeeded.", labels=["reason"])
    for reason in REASONS:
        failures.add_metric([reason], 1.0 if reason == failure else 0.0)
    return [
        GaugeMetricFamily("hostagent_ssh_up", "Whether the last probe connected and logged in.",
                          value=1.0 if up else 0.0),
        GaugeMetricFamily("hostagent_ssh_probe_duration_seconds",
                          "Duration of the target's last probe round.", value=duration),
        failures,
        GaugeMetricFamily("hostagent_ssh_connections_open",
                          "Connections to the target kept open between rounds.",
                          value=1.0 if connection_open else 0.0),
        CounterMetricFamily("hostagent_ssh_handshakes",
                            "Connection set-ups started to the target (TCP connect, SSH "
                            "handshake and login), successful or not.", value=handshakes),
    ]


def check_families(results: Mapping[str, CheckResult]) -> list[Metric]:
    success = GaugeMetricFamily(
        "hostagent_ssh_check_success", "Whether the check's command exited as expected and "
        "its output matched.", labels=["check"])
    status = GaugeMetricFamily(
        "hostagent_ssh_check_exit_status", "The check command's exit status (-1 when it did not "
        "run to completion).", labels=["check"])
    for name, result in results.items():
        success.add_metric([name], 1.0 if result.success else 0.0)
        status.add_metric([name], -1.0 if result.exit_status is None else result.exit_status)
    return [success, status] if results else []
