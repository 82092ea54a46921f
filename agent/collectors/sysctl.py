"""sysctl: chosen /proc/sys values, as node_exporter's sysctl collector (off by default).

--collector.sysctl.include=NAME exports a numeric sysctl as node_sysctl_<NAME> (untyped; a
multi-value one with an index label), NAME:key1,key2 one series per value named
node_sysctl_<NAME>_<key>; --collector.sysctl.include-info=NAME exports string values as
node_sysctl_info{name,value,index}. A sysctl that is missing or does not match its
declaration fails the run, as there: it was asked for by name."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import GaugeMetricFamily, Metric, UnknownMetricFamily

from agent.collectors.common import read_attribute_bytes

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

_INVALID = re.compile(r"_*[^0-9A-Za-z_]+_*")
_DECIMAL = re.compile(r"[+-]?[0-9]+")


def sanitize(name: str) -> str:
    """node_exporter's SanitizeMetricName: runs of other characters become one underscore."""
    return _INVALID.sub("_", name)


@dataclass(frozen=True)
class Sysctl:
    name: str
    numeric: bool
    keys: tuple[str, ...] = ()

    @classmethod
    def parse(cls, include: str, numeric: bool) -> Sysctl:
        name, colon, keys = include.partition(":")
        return cls(name, numeric, tuple(keys.split(",")) if colon else ())


def _go_int(text: str) -> int | None:
    """procfs's ValueParser.Int: base from the prefix (0x, 0o, 0b, 0), None if invalid."""
    try:
        if _DECIMAL.fullmatch(text):
            digits = text.lstrip("+-")
            if len(digits) > 1 and digits.startswith("0"):
                return int(text[: len(text) - len(digits)] + "0o" + digits[1:], 0)
            return int(text, 10)
        return int(text, 0)
    except ValueError:
        return None


class SysctlCollector:
    def __init__(self, procfs: Path, include: list[str], include_info: list[str]) -> None:
        self._root = procfs / "sys"
        self._sysctls = ([Sysctl.parse(i, True) for i in include]
                         + [Sysctl.parse(i, False) for i in include_info])

    def _values(self, sysctl: Sysctl) -> list[str]:
        path = self._root / sysctl.name.replace(".", "/")
        try:
            text = read_attribute_bytes(path).decode(errors="replace")
        except OSError as exc:
            raise ValueError(f"error obtaining sysctl info: {sysctl.name}: "
                             f"{exc.strerror or exc}") from None
        return text.split()

    def collect(self) -> list[Metric]:
        families: dict[str, Metric] = {}
        info = GaugeMetricFamily("node_sysctl_info", "sysctl info",
                                 labels=["name", "value", "index"])
        for sysctl in self._sysctls:
            fields = self._values(sysctl)
            if not fields:
                raise ValueError(f"sysctl {sysctl.name} has no values")
            if len(fields) == 1 and sysctl.keys:
                raise ValueError(f"sysctl {sysctl.name} has only one value, but expected "
                                 f"{list(sysctl.keys)}")
            if len(fields) > 1 and sysctl.keys and len(fields) != len(sysctl.keys):
                raise ValueError(f"sysctl {sysctl.name} has {len(fields)} keys but only "
                                 f"{len(sysctl.keys)} defined in flag")
            if not sysctl.numeric:
                if sysctl.keys:
                    raise ValueError("mapped sysctl string values not supported")
                for index, value in enumerate(fields):
                    info.add_metric([sysctl.name, value, str(index)], 1.0)
                continue
            numbers = []
            for index, field in enumerate(fields):
                number = _go_int(field)
                if number is None:
                    raise ValueError(f"field {index} in sysctl {sysctl.name} is not a valid "
                                     f"int: {field!r}")
                numbers.append(number)
            name = f"node_sysctl_{sanitize(sysctl.name)}"
            if len(numbers) == 1:
                family = UnknownMetricFamily(name, f"sysctl {sysctl.name}")
                family.add_metric([], float(numbers[0]))
                families[name] = family
            elif not sysctl.keys:
                family = UnknownMetricFamily(name, f"sysctl {sysctl.name}", labels=["index"])
                for index, number in enumerate(numbers):
                    family.add_metric([str(index)], float(number))
                families[name] = family
            else:
                for index, (key, number) in enumerate(zip(sysctl.keys, numbers, strict=True)):
                    keyed = f"{name}_{key}"
                    family = UnknownMetricFamily(keyed, f"sysctl {sysctl.name}, field {index}")
                    family.add_metric([], float(number))
                    families[keyed] = family
        if info.samples:
            families[info.name] = info
        return [families[name] for name in sorted(families)]


def create(context: Context, settings: Any) -> SysctlCollector:
    return SysctlCollector(context.procfs, list(settings.include), list(settings.include_info))
