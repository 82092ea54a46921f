"""write_relabel_configs with Prometheus's semantics: anchored regexes, `$1` / `${name}`
references, an empty replace result deleting the label, keep/drop on the joined source values,
labeldrop/labelkeep on label names."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from agent.remote_write.settings import RelabelConfig

Labels = tuple[tuple[str, str], ...]  # sorted by name, __name__ included

_REFERENCE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
# Results are cached by input: host series repeat every tick with the same labels.
_CACHE_LIMIT = 200_000


def _expand(template: str, match: re.Match[str]) -> str:
    def group(ref: re.Match[str]) -> str:
        key = ref.group(1) or ref.group(2)
        try:
            value = match.group(int(key)) if key.isdigit() else match.group(key)
        except IndexError:
            return ""  # Go's Regexp.Expand: an unknown group expands to nothing
        return value or ""

    return _REFERENCE.sub(group, template)



@dataclass(frozen=True)
class _Step:
    config: RelabelConfig
    regex: re.Pattern[str]


class Relabeler:
    def __init__(self, configs: Sequence[RelabelConfig]) -> None:
        self._steps = [_Step(c, re.compile(f"^(?:{c.regex})$")) for c in configs]
        self._cache: dict[Labels, Labels | None] = {}

    def __bool__(self) -> bool:
        return bool(self._steps)

    def apply(self, labels: Labels) -> Labels | None:
        """The relabelled series, or None when it is dropped."""
        if not self._steps:
            return labels
        if labels in self._cache:
            return self._cache[labels]
        result = self._apply(labels)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[labels] = result
        return result

    def _apply(self, labels: Labels) -> Labels | None:
        current = dict(labels)
        for step in self._steps:
            config = step.config
            if config.action in ("labeldrop", "labelkeep"):
                keep = config.action == "labelkeep"
                current = {k: v for k, v in current.items()
                           if bool(step.regex.match(k)) == keep}
                continue
            value = config.separator.join(current.get(name, "") for name in config.source_labels)
            match = step.regex.match(value)
            if config.action == "keep":
                if match is None:
                    return None
            elif config.action == "drop":
                if match is not None:
                    return None
            elif match is not None and config.target_label is not None:  # replace
                target = _expand(config.target_label, match)
                result = _expand(config.replacement, match)
                if not target:
                    continue
                if result:
                    current[target] = result
                else:
                    current.pop(target, None)
        if "__name__" not in current:
            return None  # a series without a name cannot be written
        return tuple(sorted(current.items()))
