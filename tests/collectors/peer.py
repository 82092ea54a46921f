"""The same fixture tree read by the real node_exporter (Debian's 1.5) and by hostagent: every
series both should expose must be identical in name, labels and value. Series that changed
since 1.5 (the reference is the latest release) are named by the caller."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Iterable

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from agent.exposition.formats import TEXT, encode

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str, prefix: str | tuple[str, ...]) -> Series:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples
            if s.name.startswith(prefix)}


def assert_matches_peer(node_exporter: Callable[..., str], collector: str, flags: Iterable[str],
                        families: list[Metric], prefix: str | tuple[str, ...],
                        newer: Callable[[str, dict[str, str]], bool] = lambda name, labels: False,
                        ) -> None:
    """newer(name, labels): a series the latest release has and 1.5 lacks."""
    url = node_exporter("--collector.disable-defaults", f"--collector.{collector}", *flags)
    theirs = parse(urllib.request.urlopen(url, timeout=10).read().decode(), prefix)
    mine = parse(encode(families, TEXT).decode(), prefix)
    assert theirs, "node_exporter read nothing from the fixture"
    only_mine = sorted(k for k in mine.keys() - theirs.keys() if not newer(k[0], dict(k[1])))
    assert not only_mine, f"hostagent exposes series node_exporter lacks: {only_mine[:10]}"
    only_theirs = sorted(theirs.keys() - mine.keys())
    assert not only_theirs, f"node_exporter exposes series hostagent lacks: {only_theirs[:10]}"
    wrong = [(k, mine[k], theirs[k]) for k in sorted(mine.keys() & theirs.keys())
             if mine[k] != theirs[k] and not (mine[k] != mine[k] and theirs[k] != theirs[k])]
    assert not wrong, f"values differ from node_exporter's: {wrong[:10]}"
