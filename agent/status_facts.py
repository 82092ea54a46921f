"""What the status page shows of a running agent, and the sampler that feeds its charts."""

from __future__ import annotations

import logging
import socket
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.agent import Agent
    from agent.status_page import PageFacts

log = logging.getLogger("hostagent.status")


def page_facts(agent: Agent) -> PageFacts:
    from agent.status_page import PageFacts, Rule  # with the page, on its first visit

    series = {name: sum(len(family.samples) for family in snapshot.families)
              for name, snapshot in agent.registry.snapshots.items()}
    counters = agent.remediation_counters
    actions: dict[str, int] = {}
    conditions: dict[str, float] = {}
    if counters is not None:
        conditions = counters.condition
        for (rule, _, _), count in counters.actions.items():
            actions[rule] = actions.get(rule, 0) + count
    remediation = agent.config.remediation
    rules = [Rule(rule.name, rule.target, conditions.get(rule.name),
                  actions.get(rule.name, 0)) for rule in remediation.rules]
    path = agent.source.path
    reload_ok, reload_time = agent.reload_state
    return PageFacts(
        hostname=socket.gethostname(), addresses=agent.addresses,
        config_file=None if path is None else str(path.resolve()),
        reload_ok=reload_ok, reload_time=reload_time, series=series, rules=rules,
        remediation_enabled=remediation.enabled, history=agent.history,
        metrics_path=agent.config.web.telemetry_path)


def sample_history(agent: Agent) -> None:
    """A status-page chart point from the published snapshots (never a collection of its
    own)."""
    try:
        agent.history.sample(agent.registry.snapshots.values(), agent.scheduler.statuses(),
                             time.time())
    except Exception:  # a chart is not worth the agent
        log.exception("status page history sample failed")
