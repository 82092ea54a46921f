"""The clash and merge policy: which source's family each exposed name comes from.

A name may appear once in an exposition (two # TYPE lines for one name make Prometheus reject
the whole scrape). Every family goes through one check, the agent's own included, in priority
order: the agent's own families, the built-in collectors, the SSH targets, then user-supplied
sources (the textfile), which yield to everything. A family several sources expose with the
same type, help and unit is merged (one header, every source's samples: node_load1 of the
local host and of each SSH target, told apart by `target`); otherwise the later source's
family is dropped and counted, and the textfile's always is, flagging its scrape error.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from agent.exposition.text import header_name

# User-supplied sources, and the gauge each sets to 1 when one of its families is dropped.
YIELDING = {"textfile": "node_textfile_scrape_error"}

_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum",
             "_created"), "summary": ("_count", "_sum", "_created"), "info": ("_info",),
             "gaugehistogram": ("_bucket", "_gcount", "_gsum")}


def exposed_names(family: Metric) -> frozenset[str]:
    """Every name a family's lines can carry in either format: a gauge `x_total` next to a
    counter `x` (exposed as `x_total`) would otherwise slip past a check on family names."""
    return _exposed_names(family.name, family.type)


@functools.lru_cache(maxsize=1 << 14)  # every render asks again for the same families
def _exposed_names(name: str, kind: str) -> frozenset[str]:
    return frozenset({name, *(name + suffix for suffix in _SUFFIXES.get(kind, ()))})


def _signature(family: Metric) -> tuple[str, str, str]:
    return family.type, family.documentation, family.unit


@dataclass
class Plan:
    # Source -> the families it exposes (its own headed ones and those merged elsewhere).
    exposed: dict[str, list[Metric]] = field(default_factory=dict)
    # Source -> the families it heads, in its order.
    headed: dict[str, list[str]] = field(default_factory=dict)
    # (source, family) -> the other sources whose samples follow under that header.
    joined: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)


def arrange(sources: Sequence[tuple[str, Sequence[Metric]]]) -> Plan:
    """sources: (key, families) in priority order."""
    plan = Plan()
    owner: dict[str, tuple[str, tuple[str, str, str]]] = {}  # family -> (source, signature)
    taken: set[str] = set()  # every exposed name of the families kept so far
    for key, families in sources:
        exposed = plan.exposed[key] = []
        headed = plan.headed[key] = []
        seen: set[str] = set()
        for family in families:
            names = exposed_names(family)
            first = owner.get(family.name)
            if first is None and not names & taken:
                owner[family.name] = (key, _signature(family))
                taken |= names
                exposed.append(family)
                headed.append(family.name)
            elif (first is not None and key not in YIELDING and family.name not in seen
                  and first[0] != key and _signature(family) == first[1]):
                plan.joined.setdefault((first[0], family.name), []).append(key)
                exposed.append(family)
            else:
                plan.dropped[key] = plan.dropped.get(key, 0) + 1
            seen.add(family.name)
        if key in YIELDING and plan.dropped.get(key):
            plan.exposed[key] = [_flagged(f) if f.name == YIELDING[key] else f for f in exposed]
    return plan


def _flagged(family: Metric) -> Metric:
    return GaugeMetricFamily(family.name, family.documentation, value=1.0)


class Arranger:
    """arrange, worked out again only when some source's families change names (and, for
    user-supplied sources, type, help or unit: built-in sources keep those per name): the
    outcome depends on nothing else, and the sources' families are new objects every tick.
    Also gives the headed families in the order the exposition writes them. One caller at
    a time."""

    def __init__(self) -> None:
        self._key: object = None
        # source -> indices of its families exposed; source -> index to flag, or -1
        self._picks: dict[str, list[int]] = {}
        self._flag: dict[str, int] = {}
        self._plan = Plan()
        self._order: list[tuple[str, str]] = []

    def arrange(self, sources: Sequence[tuple[str, Sequence[Metric]]]
                ) -> tuple[Plan, list[tuple[str, str]]]:
        """(the plan, (source, family) of every headed family in header-name order)."""
        key = tuple((name, tuple([(f.name, f.type, f.documentation, f.unit, header_name(f))
                                  for f in families] if name in YIELDING
                                 else [f.name for f in families]))
                    for name, families in sources)
        if key != self._key:
            self._learn(sources)
            self._key = key
            return self._plan, self._order
        plan = Plan(headed=self._plan.headed, joined=self._plan.joined,
                    dropped=dict(self._plan.dropped))
        for name, families in sources:
            exposed = plan.exposed[name] = [families[i] for i in self._picks[name]]
            flag = self._flag.get(name, -1)
            if flag >= 0:
                exposed[flag] = _flagged(exposed[flag])
        return plan, self._order

    def _learn(self, sources: Sequence[tuple[str, Sequence[Metric]]]) -> None:
        plan = arrange(sources)
        self._picks, self._flag = {}, {}
        for name, families in sources:
            index = {id(f): i for i, f in enumerate(families)}
            exposed = plan.exposed[name]
            # A flagged family is a new object: found by its name.
            self._picks[name] = [index[id(f)] if id(f) in index else
                                 next(i for i, g in enumerate(families) if g.name == f.name)
                                 for f in exposed]
            if name in YIELDING and plan.dropped.get(name):
                self._flag[name] = next((i for i, f in enumerate(exposed)
                                         if f.name == YIELDING[name]), -1)
        heads = {key: set(names) for key, names in plan.headed.items()}
        self._order = [(key, name) for _, key, name in sorted(
            (header_name(family), key, family.name)
            for key, families in plan.exposed.items() for family in families
            if family.name in heads[key])]
        self._plan = plan


def replace(plan: Plan, key: str, families: Sequence[Metric]) -> None:
    """Swaps a source's families for others of the same names (the agent's own, once the
    dropped counts they report are known)."""
    by_name: Mapping[str, Metric] = {f.name: f for f in families}
    plan.exposed[key] = [by_name.get(f.name, f) for f in plan.exposed[key]]
