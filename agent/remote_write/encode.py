"""Families to remote write records, without a protobuf object per sample.

A WriteRequest is `repeated TimeSeries timeseries = 1`, so the concatenation of encoded
`timeseries` fields is a valid request, and one sample's field is `head + value + tail`: the
head (field tag, lengths, the labels, the Sample's tag and length, the value's tag) depends on
the series alone and is cached per series; the tail (the timestamp's tag and varint) is
shared by every sample of one call. Host series repeat every tick with the same labels, so a
tick costs a dictionary lookup and a few bytes per sample. Field numbers come from the
compiled remote.proto; the tests decode what this writes with the generated classes.

Each source (one registry snapshot) remembers its series of the previous call: one it no
longer has gets Prometheus's stale marker, as a scrape that loses a series gets one, and a
source that is gone gets one for every series it had.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client.metrics_core import Metric

from agent.remote_write import wire
from agent.remote_write.relabel import Labels, Relabeler
from agent.remote_write.wal import Record

# Prometheus's StaleNaN (model/value.StaleNaN): a NaN no collector produces, marking the end
# of a series. Written as bits, since NaN payloads need not survive float arithmetic.
STALE_NAN_BITS = 0x7FF0000000000002
STALE_NAN = struct.pack("<Q", STALE_NAN_BITS)
_double = struct.Struct("<d").pack

_LEN, _I64, _VARINT = 2, 1, 0  # protobuf wire types


def _tag(message: object, name: str, wire_type: int) -> bytes:
    number = message.DESCRIPTOR.fields_by_name[name].number  # type: ignore[attr-defined]
    return varint(number << 3 | wire_type)


def varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64  # int64 as protobuf writes it: two's complement, ten bytes
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


TIMESERIES = _tag(wire.pb.WriteRequest, "timeseries", _LEN)
LABELS = _tag(wire.pb.TimeSeries, "labels", _LEN)
SAMPLES = _tag(wire.pb.TimeSeries, "samples", _LEN)
LABEL_NAME = _tag(wire.pb.Label, "name", _LEN)
LABEL_VALUE = _tag(wire.pb.Label, "value", _LEN)
SAMPLE_VALUE = _tag(wire.pb.Sample, "value", _I64)
SAMPLE_TIMESTAMP = _tag(wire.pb.Sample, "timestamp", _VARINT)


def _delimited(tag: bytes, data: bytes) -> bytes:
    return tag + varint(len(data)) + data


def encode_labels(labels: Labels) -> bytes:
    """The `labels` fields of a TimeSeries."""
    return b"".join(
        _delimited(LABELS, _delimited(LABEL_NAME, k.encode()) + _delimited(LABEL_VALUE,
                                                                           v.encode()))
        for k, v in labels)


def _head(labels: bytes, tail_len: int) -> bytes:
    """A TimeSeries field up to its sample's value, for a timestamp tail of tail_len bytes."""
    sample_len = len(SAMPLE_VALUE) + 8 + tail_len
    series = labels + SAMPLES + varint(sample_len) + SAMPLE_VALUE
    return TIMESERIES + varint(len(series) + 8 + tail_len) + series


def tail(ms: int) -> bytes:
    return SAMPLE_TIMESTAMP + varint(ms)


def shard_of(labels: Labels, shards: int) -> int:
    if shards == 1:
        return 0
    return zlib.crc32("\xff".join(f"{k}\xfe{v}" for k, v in labels).encode()) % shards


@dataclass(frozen=True, slots=True)
class Batch:
    """One source's samples at one time, or (families None) the end of the source."""

    source: str  # series are remembered per source: the registry's snapshot name
    base: Mapping[str, str]  # labels every series gets unless it has its own
    families: Sequence[Metric] | None
    timestamp_ms: int


@dataclass(slots=True)
class _Entry:
    shard: int  # -1: write_relabel_configs drop the series
    labels: bytes
    head: bytes


_DROPPED = _Entry(-1, b"", b"")
_END: tuple[str, dict[str, str], _Entry] = ("", {}, _DROPPED)


_Key = tuple[str, tuple[tuple[str, str], ...]]


@dataclass(slots=True)
class _Source:
    tail_len: int
    series: dict[_Key, _Entry] = field(default_factory=dict)
    # The samples of the last call in order: (name, labels, entry); a tick with the same
    # series in the same order (the usual one) is matched by position, without a key each.
    order: list[tuple[str, dict[str, str], _Entry]] = field(default_factory=list)
    dropped: int = 0  # how many of them relabelling drops


class Encoder:
    """One endpoint's: relabelling and shard count are the endpoint's. Used by one thread."""

    def __init__(self, relabeler: Relabeler, shards: int, max_samples: int) -> None:
        self.relabeler = relabeler
        self.shards = shards
        self.max_samples = max_samples
        self._sources: dict[str, _Source] = {}

    @property
    def series(self) -> int:
        return sum(len(s.series) for s in self._sources.values())

    def encode(self, batches: Sequence[Batch]) -> tuple[list[Record], int]:
        """The records for a set of batches (each series at most once among them, so one
        record may hold several batches' samples) and how many samples relabelling dropped."""
        per_shard: list[list[bytes]] = [[] for _ in range(self.shards)]
        newest = [0] * self.shards
        dropped = 0
        for batch in batches:
            before = [len(part) for part in per_shard]
            dropped += self._encode(batch, per_shard)
            for shard, part in enumerate(per_shard):
                if len(part) > before[shard]:
                    newest[shard] = max(newest[shard], batch.timestamp_ms)
        records = []
        limit = self.max_samples
        for shard, parts in enumerate(per_shard):
            for start in range(0, len(parts), limit):
                chunk = parts[start:start + limit]
                records.append(Record(len(chunk), shard, self.shards, newest[shard],
                                      wire.compress(b"".join(chunk))))
        return records, dropped

    def _encode(self, batch: Batch, out: list[list[bytes]]) -> int:
        end = tail(batch.timestamp_ms)
        state = self._sources.get(batch.source)
        if state is not None and state.tail_len != len(end):
            for entry in state.series.values():
                if entry is not _DROPPED:
                    entry.head = _head(entry.labels, len(end))
            state.tail_len = len(end)
        previous: dict[_Key, _Entry] = state.series if state is not None else {}
        if batch.families is None:
            self._sources.pop(batch.source, None)
            self._stale(previous, end, out)
            return 0
        if state is not None and self._same_series(state, batch.families, end, out):
            return state.dropped
        current: dict[_Key, _Entry] = {}
        order = []
        dropped = 0
        double = _double
        for family in batch.families:
            for sample in family.samples:
                key = (sample.name, tuple(sample.labels.items()))
                found = previous.pop(key, None)
                entry = found if found is not None else self._entry(batch.base, key, len(end))
                current[key] = entry
                order.append((sample.name, sample.labels, entry))
                if entry is _DROPPED:
                    dropped += 1
                    continue
                out[entry.shard].append(entry.head + double(sample.value) + end)
        self._stale(previous, end, out)
        self._sources[batch.source] = _Source(len(end), current, order, dropped)
        return dropped

    @staticmethod
    def _same_series(state: _Source, families: Sequence[Metric], end: bytes,
                     out: list[list[bytes]]) -> bool:
        """Encodes the samples if they are the previous call's series in the same order;
        otherwise leaves `out` as it was and returns False."""
        marks = [len(part) for part in out]
        previous = iter(state.order)
        double = _double
        for family in families:
            for sample in family.samples:
                name, labels, entry = next(previous, _END)
                if name != sample.name or labels != sample.labels:
                    for part, mark in zip(out, marks, strict=True):
                        del part[mark:]
                    return False
                if entry is not _DROPPED:
                    out[entry.shard].append(entry.head + double(sample.value) + end)
        if next(previous, None) is None:
            return True
        for part, mark in zip(out, marks, strict=True):
            del part[mark:]
        return False

    def _entry(self, base: Mapping[str, str], key: _Key, tail_len: int) -> _Entry:
        name, own = key
        merged = {**base, **dict(own), "__name__": name}
        labels = self.relabeler.apply(tuple(sorted((k, v) for k, v in merged.items() if v)))
        if labels is None:
            return _DROPPED
        encoded = encode_labels(labels)
        return _Entry(shard_of(labels, self.shards), encoded, _head(encoded, tail_len))

    @staticmethod
    def _stale(gone: Mapping[_Key, _Entry], end: bytes, out: list[list[bytes]]) -> None:
        for entry in gone.values():
            if entry is not _DROPPED:
                out[entry.shard].append(entry.head + STALE_NAN + end)

