"""The durable queue: a write-ahead log of checksummed records in numbered segment files, a
read position saved after every delivered batch, and a disk budget.

A record is `length u32 | crc32 u32 | samples u32 | shard u16 | shards u16 | timestamp i64 |
payload`, little endian (the timestamp in milliseconds); the CRC covers everything after
itself. The payload is a snappy-compressed WriteRequest, sent as is. On open every segment is
verified: a torn or corrupt record ends its segment (the last segment is truncated there), so
a crash mid-write never replays garbage. Beyond `max_bytes` the oldest segment goes, and its
unsent samples are counted as dropped.

Not thread-safe: the queue calls it from one thread.
"""

from __future__ import annotations

import bisect
import logging
import os
import struct
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

from agent.logs import kv

log = logging.getLogger("hostagent.remote_write")

HEADER = struct.Struct("<IIIHHq")
MAX_RECORD = 64 << 20
POSITION_FILE = "position"
Position = tuple[int, int]  # (segment index, byte offset)
FsyncPolicy = Literal["always", "interval", "never"]


@dataclass(frozen=True, slots=True)
class Record:
    samples: int
    shard: int
    shards: int
    timestamp_ms: int
    payload: bytes


def frame(record: Record) -> bytes:
    rest = HEADER.pack(len(record.payload), 0, record.samples, record.shard, record.shards,
                       record.timestamp_ms)[8:]
    crc = zlib.crc32(record.payload, zlib.crc32(rest))
    return struct.pack("<II", len(record.payload), crc) + rest + record.payload


def _parse(data: bytes | memoryview, offset: int) -> tuple[Record, int] | None:
    """The record at offset and the offset after it, or None if torn or corrupt."""
    if offset + HEADER.size > len(data):
        return None
    length, crc, samples, shard, shards, timestamp = HEADER.unpack_from(data, offset)
    end = offset + HEADER.size + length
    if length == 0 or length > MAX_RECORD or end > len(data) or shards == 0:
        return None
    payload = bytes(data[offset + HEADER.size:end])
    if zlib.crc32(payload, zlib.crc32(data[offset + 8:offset + HEADER.size])) != crc:
        return None
    return Record(samples, shard, shards, timestamp, payload), end


def _position_text(position: Position) -> bytes:
    body = f"{position[0]:010d} {position[1]:012d}".encode()
    return body + f" {zlib.crc32(body):08x}\n".encode()


def _parse_position(data: bytes) -> Position:
    """ValueError unless intact: `segment offset crc` (or `segment offset`, as written before
    the CRC was added)."""
    fields = data.split()
    if len(fields) == 3:
        body = data[:data.rindex(b" ")]
        if f"{zlib.crc32(body):08x}".encode() != fields[2]:
            raise ValueError("position checksum mismatch")
    elif len(fields) != 2:
        raise ValueError("not a position")
    return int(fields[0]), int(fields[1])


@dataclass(slots=True)
class _Segment:
    index: int
    path: Path
    size: int = 0  # valid bytes: records after a corrupt one are never read
    offsets: list[int] = field(default_factory=list)  # where each record starts
    cumulative: list[int] = field(default_factory=list)  # samples up to and including each

    @property
    def samples(self) -> int:
        return self.cumulative[-1] if self.cumulative else 0

    def samples_from(self, offset: int) -> int:
        i = bisect.bisect_left(self.offsets, offset)
        return self.samples - (self.cumulative[i - 1] if i else 0)

    def add(self, offset: int, samples: int) -> None:
        self.offsets.append(offset)
        self.cumulative.append(self.samples + samples)


@dataclass
class WalStats:
    corrupt_segments: int = 0  # segments cut short at open
    dropped_samples: int = 0  # unsent samples removed to stay within the budget
    dropped_segments: int = 0


class Wal:
    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int,
                 fsync: FsyncPolicy = "interval", fsync_interval: float = 1.0) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self.fsync_interval = fsync_interval
        self.stats = WalStats()
        self._segments: list[_Segment] = []
        self._head: BinaryIO | None = None
        self._last_sync = time.monotonic()
        self._dirty = False
        self.position: Position = (0, 0)
        self._position_fd: int | None = None
        # End of the batch being sent (held in memory): the budget dropping its segment
        # loses only what lies beyond it.
        self.in_flight: Position | None = None

    # Opening and replay

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        indexes = sorted(int(p.name) for p in self.directory.iterdir() if p.name.isdigit())
        for i, index in enumerate(indexes):
            self._segments.append(self._scan(index, last=i == len(indexes) - 1))
        self.position = self._load_position()
        # Appends always go to a fresh segment: nothing is ever written after a torn tail.
        self._new_head()
        self._drop_acked()
        self._enforce_budget()

    def _scan(self, index: int, last: bool) -> _Segment:
        segment = _Segment(index, self._path(index))
        data = segment.path.read_bytes()
        offset = 0
        while offset < len(data):
            parsed = _parse(data, offset)
            if parsed is None:
                break
            segment.add(offset, parsed[0].samples)
            offset = parsed[1]
        segment.size = offset
        if offset < len(data):
            self.stats.corrupt_segments += 1
            log.warning("remote write queue: torn or corrupt record, the rest of the segment "
                        "is skipped", extra=kv(segment=segment.path, offset=offset,
                                               skipped_bytes=len(data) - offset))
            if last:
                with segment.path.open("r+b") as f:
                    f.truncate(offset)
        return segment

    def _load_position(self) -> Position:
        first = self._segments[0].index if self._segments else 0
        try:
            position = _parse_position((self.directory / POSITION_FILE).read_bytes())
        except (OSError, ValueError):
            return (first, 0)
        for segment in self._segments:
            if segment.index == position[0]:
                # Offsets past a corrupt record fall back to its end; mid-record ones cannot
                # occur (positions are record boundaries) but would be rounded up.
                i = bisect.bisect_left(segment.offsets, position[1])
                offset = segment.offsets[i] if i < len(segment.offsets) else segment.size
                return (segment.index, offset)
            if segment.index > position[0]:
                return (segment.index, 0)
        return (self._segments[-1].index, self._segments[-1].size) if self._segments \
            else (position[0] + 1, 0)

    # Writing

    def _path(self, index: int) -> Path:
        return self.directory / f"{index:010d}"

    def _new_head(self) -> None:
        if self._head is not None:
            self._sync(force=True)
            self._head.close()
        index = max(self._segments[-1].index + 1 if self._segments else 0, self.position[0])
        segment = _Segment(index, self._path(index))
        self._head = segment.path.open("ab")
        self._segments.append(segment)
        if self.fsync == "always":
            self._sync_directory()

    def append(self, records: list[Record]) -> None:
        """Write records durably (per the fsync policy) before anything sends them."""
        assert self._head is not None, "open() first"
        for record in records:
            data = frame(record)
            head = self._segments[-1]
            if head.size and head.size + len(data) > self.segment_bytes:
                self._new_head()
                head = self._segments[-1]
            self._head.write(data)
            head.add(head.size, record.samples)
            head.size += len(data)
        # Flushed to the kernel on every append: a killed process loses nothing written.
        self._head.flush()
        self._dirty = True
        self._sync()
        self._enforce_budget()

    def _sync(self, force: bool = False) -> None:
        if self._head is None or not self._dirty or self.fsync == "never":
            return
        now = time.monotonic()
        if force or self.fsync == "always" or now - self._last_sync >= self.fsync_interval:
            os.fsync(self._head.fileno())
            self._last_sync = now
            self._dirty = False

    def _sync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _enforce_budget(self) -> None:
        while self.total_bytes > self.max_bytes and len(self._segments) > 1:
            oldest = self._segments.pop(0)
            if oldest.index >= self.position[0]:
                sent_to = max(self.position, self.in_flight or self.position)
                lost = 0
                if oldest.index >= sent_to[0]:
                    lost = oldest.samples_from(sent_to[1] if oldest.index == sent_to[0] else 0)
                if lost:
                    self.stats.dropped_samples += lost
                    self.stats.dropped_segments += 1
                    log.warning("remote write queue over its disk budget, dropped the oldest "
                                "segment", extra=kv(segment=oldest.path, samples=lost))
                self.position = (self._segments[0].index, 0)
                self._save_position()
            oldest.path.unlink(missing_ok=True)

    # Reading and acknowledging

    def read(self, max_samples: int, start: Position | None = None
             ) -> tuple[list[Record], Position]:
        """Records from start (default: the saved position) holding at most max_samples (at
        least one record when any is there), all written with the same shard count, and the
        position after them."""
        position = start if start is not None else self.position
        records: list[Record] = []
        total = 0
        for segment in self._segments:
            if segment.index < position[0]:
                continue
            offset = position[1] if segment.index == position[0] else 0
            if offset >= segment.size:
                position = (segment.index, segment.size)
                continue
            with segment.path.open("rb") as f:
                f.seek(offset)
                data = f.read(segment.size - offset)
            cursor = 0
            while cursor < len(data):
                parsed = _parse(data, cursor)
                if parsed is None:  # damaged on disk since it was verified: skip the rest
                    self.stats.corrupt_segments += 1
                    log.error("remote write queue: corrupt record, the rest of the segment is "
                              "skipped", extra=kv(segment=segment.path, offset=offset + cursor))
                    if segment is self._segments[-1]:
                        self._new_head()
                    cursor = len(data)
                    break
                record, end = parsed
                if records and (total + record.samples > max_samples
                                or record.shards != records[0].shards):
                    return records, (segment.index, offset + cursor)
                records.append(record)
                total += record.samples
                cursor = end
            position = (segment.index, offset + cursor)
        return records, position

    def ack(self, position: Position) -> None:
        """Everything before position was delivered (or given up on): never sent again."""
        if position <= self.position:
            return  # the budget already moved past it
        self.position = position
        self._drop_acked()
        self._save_position()

    def _drop_acked(self) -> None:
        while len(self._segments) > 1 and (
                self._segments[0].index < self.position[0]
                or (self._segments[0].index == self.position[0]
                    and self.position[1] >= self._segments[0].size)):
            gone = self._segments.pop(0)
            gone.path.unlink(missing_ok=True)
            if gone.index == self.position[0]:
                self.position = (self._segments[0].index, 0)

    def _save_position(self) -> None:
        """Overwritten in place (fixed width, with its own CRC) on every delivered batch;
        synced only with fsync=always. A position torn or lost by a crash fails its CRC and
        falls back to the oldest segment: delivered samples are sent again (duplicates
        receivers accept), none is skipped."""
        if self._position_fd is None:
            self._position_fd = os.open(self.directory / POSITION_FILE,
                                        os.O_RDWR | os.O_CREAT, 0o644)
        data = _position_text(self.position)
        os.pwrite(self._position_fd, data, 0)
        if self.fsync == "always":
            os.fsync(self._position_fd)

    # State

    @property
    def total_bytes(self) -> int:
        return sum(s.size for s in self._segments)

    @property
    def pending_bytes(self) -> int:
        return sum(s.size - (self.position[1] if s.index == self.position[0] else 0)
                   for s in self._segments if s.index >= self.position[0])

    @property
    def pending_samples(self) -> int:
        return sum(s.samples_from(self.position[1] if s.index == self.position[0] else 0)
                   for s in self._segments if s.index >= self.position[0])

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    def state(self) -> tuple[int, int, int]:
        """(pending samples, pending bytes, bytes on disk)."""
        return self.pending_samples, self.pending_bytes, self.total_bytes

    def close(self) -> None:
        if self._head is not None:
            self._sync(force=True)
            self._head.close()
            self._head = None
        if self._position_fd is not None:
            os.close(self._position_fd)
            self._position_fd = None
