"""The collector protocol: a blocking collect() that returns metric families."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from prometheus_client.metrics_core import Metric


class Collector(Protocol):
    """collect() runs in a worker thread; it may block, but must not touch the event loop."""

    def collect(self) -> Iterable[Metric]: ...
