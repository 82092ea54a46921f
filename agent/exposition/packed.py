"""A family kept as its encoded sample lines, one bytes object per format, not as samples.

Thousands of Sample tuples, label dicts and strings kept between collections (a large
textfile's) live in Python's small-object arenas, and objects allocated meanwhile settle among
them; when the family goes, those few survivors keep the arenas, and RSS stays up for good. A
blob over 512 bytes comes from malloc instead and goes back to the system whole. The exposition
writes a packed family's lines as they are (agent.exposition.formats packs and writes them);
anything else asking for its samples (remote write) gets them decoded again on each access.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample

# One line as the OpenMetrics encoder writes a plain sample: name, sorted labels, value.
_LINE = re.compile(r'([^{ ]+)(?:\{(.*)\})? (\S+)')
_LABEL = re.compile(r'([^=,]+)="((?:[^"\\]|\\.)*)"')
_ESCAPE = re.compile(r"\\(.)")


def _unescape(value: str) -> str:
    return _ESCAPE.sub(lambda m: "\n" if m[1] == "n" else m[1], value) if "\\" in value else value


def decode(lines: bytes) -> list[Sample]:
    """Samples from OpenMetrics sample lines (no timestamps, exemplars or escaped names)."""
    samples = []
    for line in lines.decode().split("\n")[:-1]:
        match = _LINE.fullmatch(line)
        if match is None:
            raise ValueError(f"not a packed sample line: {line!r}")
        name, labels, value = match.groups()
        pairs = {k: _unescape(v) for k, v in _LABEL.findall(labels)} if labels else {}
        samples.append(Sample(name, pairs, float(value)))
    return samples


class PackedFamily(Metric):
    """Name, help and type as any family; samples as encoded lines by format.

    text_name is the name its text-format header carries (text.header_name of the samples);
    count how many samples; unique whether no series repeats."""

    def __init__(self, name: str, documentation: str, typ: str, text_name: str,
                 lines: Mapping[str, bytes], count: int, unique: bool) -> None:
        super().__init__(name, documentation, typ)
        self.text_name = text_name
        self.lines = dict(lines)
        self.count = count
        self.unique = unique

    @property
    def samples(self) -> list[Sample]:
        return decode(self.lines["openmetrics"])

    @samples.setter
    def samples(self, value: list[Sample]) -> None:
        if value:  # Metric.__init__ sets [] only
            raise TypeError("a packed family's samples are fixed")

    def with_help(self, documentation: str) -> PackedFamily:
        """The same samples under another HELP text (the lines do not carry it)."""
        return PackedFamily(self.name, documentation, self.type, self.text_name, self.lines,
                            self.count, self.unique)
