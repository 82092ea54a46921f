"""The soak bench's short form: steady scrapes, a reload storm, slow readers and textfile churn
together, then fds and threads back where they started, RSS near it, no scrape failed."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from soak import soak

# What the load still leaves: about 3.5 MB (bench/README.md). Textfile churn left about 7 MB
# while large files were parsed in the agent's own heap, 16 MB before families were kept packed.
RSS_SLACK_MB = 6.0


def test_short_soak_returns_to_its_start() -> None:
    result = soak(12.0)
    assert result.scrapes > 20 and result.reloads > 10 and result.slow_readers >= 20
    assert result.textfile_writes >= 3
    assert result.peak.fds > result.start.fds, "the slow readers held connections open"
    assert result.problems(RSS_SLACK_MB) == [], result
