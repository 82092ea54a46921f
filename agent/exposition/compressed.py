"""Families kept as bytes between uses: an SSH target's node series, held for a whole interval
but read only when a client asks for /probe (or remote write, or a self-healing condition).

As prometheus_client objects a host's node series are ~480 Metric/Sample objects and their
label dicts (~90 KiB, freed piecemeal each round, which fragments the heap); compressed they are one
bytes object of a few KiB. The bytes are a pickle: it round-trips every field
exactly (value types, label order, timestamps), so what is encoded from the unpacked families
is byte-identical to what the originals gave. Only the agent's processes make and read them
(the SSH worker's process sends every target's families this way), from families they built.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

from prometheus_client.metrics_core import Metric

LEVEL = 1  # fast: compressed once per round per target, in the round's parse thread


class CompressedFamilies:
    __slots__ = ("_data",)

    def __init__(self, families: Iterable[Metric]) -> None:
        import pickle  # here: a default agent (no SSH) never compresses families

        self._data = zlib.compress(pickle.dumps(list(families), pickle.HIGHEST_PROTOCOL), LEVEL)

    def unpack(self) -> list[Metric]:
        """New objects on every call: callers may label or change them freely."""
        import pickle

        families: list[Metric] = pickle.loads(zlib.decompress(self._data))
        return families

    @property
    def size(self) -> int:
        """Bytes held."""
        return len(self._data)
