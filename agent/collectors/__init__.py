"""The collector table: config name -> factory. Enabling, flags and docs all derive from it.

Factories import their module lazily, so a disabled collector costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.collectors.base import Collector
from agent.config import Config

Factory = Callable[[Config, Any], Collector]


def _cpu(config: Config, settings: Any) -> Collector:
    from agent.collectors.cpu import CpuCollector

    return CpuCollector(config.paths.procfs)


def _memory(config: Config, settings: Any) -> Collector:
    from agent.collectors.memory import MemoryCollector

    return MemoryCollector(config.paths.procfs)


FACTORIES: dict[str, Factory] = {
    "cpu": _cpu,
    "memory": _memory,
}


def build(name: str, config: Config) -> Collector:
    return FACTORIES[name](config, getattr(config.collectors, name))
