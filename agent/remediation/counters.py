"""What the remediation engine counts, and its families: light, so an agent without rules
publishes the same (empty) families without loading the engine."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric


@dataclass
class Counters:
    """Everything the engine counts, kept across reloads (counters never go back)."""

    condition: dict[str, float] = field(default_factory=dict)
    actions: dict[tuple[str, str, str], int] = field(default_factory=dict)
    episodes: dict[tuple[str, str], int] = field(default_factory=dict)

    def count_action(self, rule: str, tier: int, result: str) -> None:
        key = (rule, str(tier), result)
        self.actions[key] = self.actions.get(key, 0) + 1

    def count_episode(self, rule: str, outcome: str) -> None:
        self.episodes[(rule, outcome)] = self.episodes.get((rule, outcome), 0) + 1

    def families(self) -> list[Metric]:
        condition = GaugeMetricFamily("hostagent_remediation_condition",
                                      "Whether the rule's condition holds now (1) or not (0).",
                                      labels=["rule"])
        for rule, value in sorted(self.condition.items()):
            condition.add_metric([rule], value)
        actions = CounterMetricFamily(
            "hostagent_remediation_actions",
            "Recovery actions run, by rule, tier (from 1) and result: success (exit 0), "
            "failure, timeout, or dry_run (counted, not run).", labels=["rule", "tier", "result"])
        for (rule, tier, result), count in sorted(self.actions.items()):
            actions.add_metric([rule, tier, result], count)
        episodes = CounterMetricFamily(
            "hostagent_remediation_episodes",
            "Episodes by how they ended: recovered, escalated (every tier failed), limited "
            "(an hourly limit stopped it) or dry_run; error counts evaluations that failed.",
            labels=["rule", "outcome"])
        for (rule, outcome), count in sorted(self.episodes.items()):
            episodes.add_metric([rule, outcome], count)
        return [condition, actions, episodes]
