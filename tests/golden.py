"""Golden exposition files for collector parsers.

Regenerate after an intended change with:  UPDATE_GOLDEN=1 pytest tests/collectors
then review the diff of tests/fixtures/golden/ before committing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from agent.exposition.formats import TEXT, encode

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = FIXTURES / "golden"


def assert_golden(families: Iterable[Metric], name: str) -> None:
    text = encode(families, TEXT).decode()
    path = GOLDEN / f"{name}.prom"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.exists(), f"{path} missing: run UPDATE_GOLDEN=1 pytest to create it"
    assert text == path.read_text(), f"output differs from {path}"


Meta = dict[str, tuple[str, str]]
Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def exposed(text: str) -> tuple[Meta, Series]:
    """An exposition's (help, type) per family and value per series."""
    meta: Meta = {}
    series: Series = {}
    for family in text_string_to_metric_families(text):
        meta[family.name] = (family.documentation, family.type)
        for sample in family.samples:
            series[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return meta, series


def assert_node_exporter(families: Iterable[Metric], path: Path) -> None:
    """The families expose exactly the series, help and types of node_exporter's expected
    output in path (written from its own collector tests and e2e output)."""
    mine = exposed(encode(families, TEXT).decode())
    theirs = exposed(path.read_text())
    assert mine[0] == theirs[0], "help or type differ from node_exporter"
    only_mine = sorted(set(mine[1]) - set(theirs[1]), key=str)
    only_theirs = sorted(set(theirs[1]) - set(mine[1]), key=str)
    assert not only_mine and not only_theirs, (only_mine[:5], only_theirs[:5])
    wrong = {k: (v, theirs[1][k]) for k, v in mine[1].items() if v != theirs[1][k]}
    assert not wrong, f"values differ (ours, node_exporter's): {list(wrong.items())[:5]}"
