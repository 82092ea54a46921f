"""`hostagent remediation test RULE`: evaluate one rule once against a fresh collection and
print what the agent would do. Nothing runs but the collectors and a check command."""

from __future__ import annotations

import shlex
import sys
from typing import TYPE_CHECKING

from agent.remediation.condition import parse_condition
from agent.remediation.engine import Engine, RuleRunner

if TYPE_CHECKING:
    from agent.config import Config

EXIT_OK, EXIT_USAGE = 0, 2


async def test_rule(config: Config, name: str) -> int:
    from agent.agent import Agent

    rules = {rule.name: rule for rule in config.remediation.rules}
    rule = rules.get(name)
    if rule is None:
        known = ", ".join(sorted(rules)) or "none configured"
        print(f"hostagent: no remediation rule {name!r} (rules: {known})", file=sys.stderr)
        return EXIT_USAGE
    if rule.target != "local" and rule.condition.metric is None:
        print(f"rule {name}: its condition is read on SSH target {rule.target}, which only "
              "the running agent reaches", file=sys.stderr)
        return EXIT_USAGE
    agent = Agent(config)
    await agent.scheduler.run_all_once()
    engine = Engine(agent.families_of, lambda families: None)
    engine.config = config.remediation
    runner = RuleRunner(rule, engine)
    holds = await runner.holds()
    detail = ""
    if rule.condition.metric is not None:
        expr = parse_condition(rule.condition.metric)
        values = expr.values(agent.families_of(rule.target))
        detail = f" ({len(values)} matching series: {', '.join(f'{v:g}' for v in values[:10])})"
    print(f"rule {name}: condition {'holds' if holds else 'does not hold'}{detail}")
    if not holds:
        print("nothing would run")
        return EXIT_OK
    mode = " (dry run: counted, not run)" if config.remediation.dry_run else ""
    hold = f" once it has held for {rule.for_:g} s" if rule.for_ else ""
    for number, tier in enumerate(rule.tiers, start=1):
        command = tier.command if isinstance(tier.command, str) else shlex.join(tier.command)
        print(f"tier {number}{hold}{mode}: on {rule.target}: {command} "
              f"(attempts {tier.attempts}, timeout {tier.timeout:g} s, "
              f"verify within {tier.verify:g} s)")
        hold = ""
    target = config.remediation.alertmanager_url or "nowhere (no alertmanager_url)"
    print(f"then, if the condition has not cleared: escalate to {target}")
    return EXIT_OK
