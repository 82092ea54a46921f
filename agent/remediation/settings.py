"""The `remediation` section of the configuration. Imports nothing of the agent but the
condition parser, so the configuration model can build on it."""

from __future__ import annotations

import re
from collections import Counter
from typing import Literal

from pydantic import Field, field_validator, model_validator

from agent.collectors.settings import Strict
from agent.remediation.condition import parse_condition


class CommandCheck(Strict):
    """A local check: the condition holds while the command fails this test."""

    argv: list[str] = Field(min_length=1)
    expect_status: int = Field(0, ge=0, le=255)
    regex: str | None = Field(None, description="must match standard output")
    timeout: float = Field(10.0, gt=0)

    @field_validator("regex")
    @classmethod
    def _check_regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return value


class SshCheckRef(Strict):
    """The condition holds while this check of the SSH worker fails on the rule's target."""

    check: str = Field(min_length=1)


class Condition(Strict):
    """Exactly one of: an expression over the agent's own series, a local check command,
    an SSH check."""

    metric: str | None = Field(None, description='e.g. node_filesystem_avail_bytes'
                               '{mountpoint="/var"} < 1e9')
    command: CommandCheck | None = None
    ssh_check: SshCheckRef | None = None

    @field_validator("metric")
    @classmethod
    def _parse(cls, value: str | None) -> str | None:
        if value is not None:
            parse_condition(value)
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> Condition:
        given = [k for k in ("metric", "command", "ssh_check") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of metric, command, ssh_check")
        return self


class Tier(Strict):
    command: list[str] | str = Field(description="argv list; a string only with shell: true")
    shell: bool = False
    timeout: float = Field(30.0, gt=0)
    attempts: int = Field(1, ge=1, le=10)
    verify: float = Field(30.0, gt=0, description="seconds within which the condition must "
                          "clear after the action")

    @model_validator(mode="after")
    def _shell_matches_form(self) -> Tier:
        if isinstance(self.command, str) and not self.shell:
            raise ValueError("a command string runs through a shell: set shell: true, or "
                             "give an argv list")
        if isinstance(self.command, list) and not self.command:
            raise ValueError("command must not be empty")
        return self


class Rule(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.:-]+$")
    target: str = Field("local", description='"local" or the name of an SSH target')
    condition: Condition
    for_: float = Field(0.0, ge=0, alias="for", description="the condition must hold this "
                        "long before it counts")
    interval: float = Field(10.0, gt=0, description="seconds between evaluations")
    tiers: list[Tier] = Field(min_length=1)
    cooldown: float = Field(300.0, ge=0, description="seconds between two episodes")
    max_actions_per_hour: int = Field(6, ge=1)
    labels: dict[str, str] = {}

    model_config = Strict.model_config | {"populate_by_name": True}

    @model_validator(mode="after")
    def _ssh_check_needs_a_target(self) -> Rule:
        if self.condition.ssh_check is not None and self.target == "local":
            raise ValueError("an ssh_check condition needs an SSH target")
        return self


class RemediationConfig(Strict):
    enabled: bool = Field(True, description="the kill switch: false stops every rule")
    dry_run: bool = Field(False, description="log and count what would run, run nothing")
    alertmanager_url: str | None = Field(None, pattern=r"^https?://",
                                         description="escalations go to its /api/v2/alerts")
    max_actions_per_hour: int = Field(20, ge=1, description="for all rules of one host")
    output_limit: int = Field(65536, ge=1024, description="bytes of an action's output kept")
    rules: list[Rule] = []

    @model_validator(mode="after")
    def _unique_names(self) -> RemediationConfig:
        duplicates = sorted(n for n, c in Counter(r.name for r in self.rules).items() if c > 1)
        if duplicates:
            raise ValueError(f"duplicate rule names: {', '.join(duplicates)}")
        return self


Comparison = Literal["==", "!=", "<", "<=", ">", ">="]
