"""The collector table: config name -> factory. Enabling, flags and docs all derive from it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.collectors.base import Collector
from agent.collectors.cpu import CpuCollector
from agent.collectors.memory import MemoryCollector
from agent.config import Config

Factory = Callable[[Config, Any], Collector]

FACTORIES: dict[str, Factory] = {
    "cpu": lambda config, settings: CpuCollector(config.paths.procfs),
    "memory": lambda config, settings: MemoryCollector(config.paths.procfs),
}


def build(name: str, config: Config) -> Collector:
    return FACTORIES[name](config, getattr(config.collectors, name))
