"""Golden exposition files for collector parsers.

Regenerate after an intended change with:  UPDATE_GOLDEN=1 pytest tests/collectors
then review the diff of tests/fixtures/golden/ before committing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from prometheus_client.metrics_core import Metric

from agent.formats import TEXT, encode

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = FIXTURES / "golden"


def assert_golden(families: Iterable[Metric], name: str) -> None:
    text = encode(families, TEXT).decode()
    path = GOLDEN / f"{name}.prom"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.exists(), f"{path} missing: run UPDATE_GOLDEN=1 pytest to create it"
    assert text == path.read_text(), f"output differs from {path}"
