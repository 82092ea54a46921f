"""Gzip of a body assembled from families, compressing again only the runs of families that
changed since the previous body.

The body is cut into runs before family names picked by a hash of the name, so the cuts stay
where they are as values change. Each run is compressed on its own as raw deflate ended by a
sync flush (byte-aligned, not final), so the runs concatenate into one valid stream; a run
whose parts are the very same objects as last time (the encoder hands out the same bytes for
an unchanged family) reuses its compressed bytes. The crc and length are of the whole body.
"""

from __future__ import annotations

import functools
import struct
import zlib
from collections.abc import Sequence
from operator import is_

# About one family in this many starts a run: runs of a few kB, small enough that a changed
# family costs little to compress again, large enough to compress nearly as well as a whole.
RUN_MODULUS = 32
# Magic, deflate, no flags, mtime 0, "fastest" (as gzip.compress writes at level 1), OS unknown.
_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x04\xff"
_FINAL = b"\x03\x00"  # an empty final deflate block
Part = bytes | memoryview


@functools.lru_cache(maxsize=1 << 14)
def starts_run(name: str) -> bool:
    return zlib.crc32(name.encode()) % RUN_MODULUS == 0


class RunGzip:
    """One body's gzip, format after format of the same stream. One caller at a time."""

    def __init__(self, level: int) -> None:
        self._level = level
        self._runs: dict[object, tuple[Sequence[Part], bytes]] = {}

    def compress(self, runs: Sequence[tuple[object, Sequence[Part]]], plain: bytes) -> bytes:
        """runs: (the key of its first family, its parts), in body order; plain: their join."""
        previous, current = self._runs, {}
        out = [_HEADER]
        for start, parts in runs:
            cached = previous.get(start)
            if (cached is not None and len(cached[0]) == len(parts)
                    and all(map(is_, cached[0], parts))):
                data = cached[1]
            else:
                compressor = zlib.compressobj(self._level, zlib.DEFLATED, -zlib.MAX_WBITS)
                data = compressor.compress(b"".join(parts)) + compressor.flush(zlib.Z_SYNC_FLUSH)
            current[start] = (parts, data)
            out.append(data)
        self._runs = current
        out += [_FINAL, struct.pack("<II", zlib.crc32(plain), len(plain) & 0xFFFFFFFF)]
        return b"".join(out)
