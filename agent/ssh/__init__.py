"""SSH fan-out: probes remote hosts and feeds the registry; `hostagent ssh exec` for batch runs.

The supervisor and two process-wide settings live here. asyncssh is imported when the worker
starts (ssh.enabled) or a batch command runs, never by an agent that has SSH off.
"""

from __future__ import annotations

import gc
import logging
from typing import TYPE_CHECKING

from agent.config import SshConfig
from agent.exposition.registry import Registry

if TYPE_CHECKING:
    from agent.remediation.actions import Outcome
    from agent.ssh.worker import SshWorker

log = logging.getLogger("hostagent.ssh")

# The probe modules: login (reachability and login), checks (named commands), node (node_*).
MODULES = ("login", "checks", "node")
# Every command makes thousands of short-lived objects, and each young collection that
# cascades into a full one walks every kept connection: collect young objects less often.
GC_YOUNG_THRESHOLD = 10_000


def quiet_asyncssh() -> None:
    """asyncssh logs every connection and channel at INFO; keep that for debug logging."""
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("asyncssh").setLevel(logging.WARNING)


def tune_gc() -> tuple[int, int, int]:
    """Raises the young-generation threshold to GC_YOUNG_THRESHOLD; returns the previous
    thresholds."""
    previous = gc.get_threshold()
    gc.set_threshold(max(previous[0], GC_YOUNG_THRESHOLD), *previous[1:])
    return previous


class SshSupervisor:
    """Starts, reconfigures and stops the worker as the configuration says."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self.worker: SshWorker | None = None
        self._gc_threshold: tuple[int, int, int] | None = None

    async def apply(self, config: SshConfig) -> None:
        if not config.enabled:
            await self.stop()
            return
        if self.worker is None:
            from agent.ssh.worker import SshWorker

            quiet_asyncssh()
            self._gc_threshold = tune_gc()
            worker = SshWorker(config, self._registry)
            await worker.start()
            self.worker = worker
        else:
            await self.worker.apply(config)

    async def stop(self) -> None:
        if self.worker is not None:
            worker, self.worker = self.worker, None
            await worker.stop()
        if self._gc_threshold is not None:
            gc.set_threshold(*self._gc_threshold)
            self._gc_threshold = None

    async def run_on(self, target: str, command: str, timeout: float) -> Outcome:
        """A remediation action on a target, over the worker's connection to it."""
        from agent.remediation.actions import Outcome

        if self.worker is None:
            return Outcome(None, b"", b"", 0.0, "the SSH worker is not running")
        return await self.worker.run_on(target, command, timeout)

    def check_success(self, target: str, check: str) -> bool | None:
        """The last result of a check on a target; None before the first or when unknown."""
        return self.worker.check_success(target, check) if self.worker is not None else None

    def status(self) -> tuple[int, int] | None:
        """(targets up, targets) while the worker runs."""
        return self.worker.up_count() if self.worker is not None else None
