"""Conditions over the agent's own series: `name{label="v",other=~"re"} OP number`, true when
any matching sample satisfies the comparison (no matching sample: false), as a Prometheus
alerting rule with one vector selector."""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client.metrics_core import Metric

_SELECTOR = re.compile(
    r"^\s*(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{(?P<matchers>.*)\})?\s*"
    r"(?P<op>==|!=|<=|>=|<|>)\s*(?P<value>[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+|Inf|NaN))\s*$")
_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(,|$)')
# A string's escapes; any other backslash stays (a regex's \. means what it says).
_ESCAPE = re.compile(r"\\(.)")
_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t", "r": "\r"}
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge}


@dataclass(frozen=True)
class LabelMatcher:
    name: str
    op: str
    value: str

    def matches(self, labels: dict[str, str]) -> bool:
        have = labels.get(self.name, "")
        if self.op == "=":
            return have == self.value
        if self.op == "!=":
            return have != self.value
        found = re.fullmatch(self.value, have) is not None
        return found if self.op == "=~" else not found


@dataclass(frozen=True)
class ConditionExpr:
    metric: str
    matchers: tuple[LabelMatcher, ...]
    op: str
    threshold: float

    def values(self, families: Iterable[Metric]) -> list[float]:
        """The values of the samples the selector picks."""
        out = []
        for family in families:
            for sample in family.samples:
                if sample.name == self.metric and all(
                        m.matches(sample.labels) for m in self.matchers):
                    out.append(sample.value)
        return out

    def holds(self, families: Iterable[Metric]) -> bool:
        compare = OPERATORS[self.op]
        return any(compare(value, self.threshold) for value in self.values(families))


def parse_condition(text: str) -> ConditionExpr:
    """Raises ValueError naming what is wrong."""
    found = _SELECTOR.match(text)
    if found is None:
        raise ValueError(f"expected NAME{{label=\"value\",...}} OP NUMBER, got {text!r}")
    matchers = []
    rest = found.group("matchers") or ""
    while rest.strip():
        part = _MATCHER.match(rest)
        if part is None:
            raise ValueError(f"invalid label matcher in {text!r}: {rest.strip()!r}")
        name, op, value = part.group(1), part.group(2), part.group(3)
        value = _ESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(0)), value)
        if op in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression for {name}: {exc}") from None
        matchers.append(LabelMatcher(name, op, value))
        rest = rest[part.end():]
    raw = found.group("value")
    threshold = math.inf if raw.lstrip("+") == "Inf" else -math.inf if raw == "-Inf" \
        else float(raw)
    return ConditionExpr(found.group("name"), tuple(matchers), found.group("op"), threshold)
