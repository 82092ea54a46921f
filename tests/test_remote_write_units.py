"""Remote write parts on their own: the write-ahead log, relabelling, the wire format, config."""

from __future__ import annotations

import math
import struct

import pytest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily

from agent.config import ConfigError, build
from agent.exposition.registry import Registry, Snapshot, TargetSnapshot
from agent.remote_write import encode, wire
from agent.remote_write.encode import STALE_NAN, Batch, Encoder
from agent.remote_write.pusher import Pusher, default_external_labels, metadata_of
from agent.remote_write.relabel import Relabeler
from agent.remote_write.settings import (
    RelabelConfig,
    RemoteWriteConfig,
    endpoint_name,
    redacted_url,
)
from agent.remote_write.wal import HEADER, Record, Wal


def record(n: int, samples: int = 1, shard: int = 0, shards: int = 1) -> Record:
    return Record(samples, shard, shards, n, f"payload-{n}".encode() * 10)


def open_wal(path, **kw) -> Wal:
    settings = {"max_bytes": 1 << 20, "segment_bytes": 1 << 12, "fsync": "always", **kw}
    wal = Wal(path, **settings)
    wal.open()
    return wal


def drain(wal: Wal, max_samples: int = 10**9) -> list[int]:
    records, _end = wal.read(max_samples)
    return [r.timestamp_ms for r in records]


# WAL

def test_wal_read_ack_and_resume_after_reopen(tmp_path) -> None:
    wal = open_wal(tmp_path)
    wal.append([record(i, samples=2) for i in range(5)])
    assert wal.pending_samples == 10
    records, end = wal.read(max_samples=4)
    assert [r.timestamp_ms for r in records] == [0, 1]
    wal.ack(end)
    assert wal.pending_samples == 6
    wal.close()

    wal = open_wal(tmp_path)  # a restart resumes at the saved position
    assert drain(wal) == [2, 3, 4]
    assert wal.pending_samples == 6
    wal.append([record(5)])
    assert drain(wal) == [2, 3, 4, 5]


def test_wal_segments_rotate_and_acked_ones_are_deleted(tmp_path) -> None:
    wal = open_wal(tmp_path, segment_bytes=4096)
    for i in range(100):
        wal.append([record(i)])
    assert wal.segment_count > 3
    records, end = wal.read(10**9)
    assert [r.timestamp_ms for r in records] == list(range(100))
    wal.ack(end)
    assert wal.segment_count == 1
    assert wal.pending_samples == 0 and wal.pending_bytes == 0
    assert len([p for p in tmp_path.iterdir() if p.name.isdigit()]) == 1


def test_torn_last_record_is_cut_never_replayed(tmp_path) -> None:
    wal = open_wal(tmp_path)
    wal.append([record(i) for i in range(3)])
    wal.close()
    segment = max(p for p in tmp_path.iterdir() if p.name.isdigit())
    data = segment.read_bytes()
    segment.write_bytes(data[:-5])  # a crash in the middle of the third record

    wal = open_wal(tmp_path)
    assert wal.stats.corrupt_segments == 1
    assert drain(wal) == [0, 1]
    wal.append([record(3)])
    assert drain(wal) == [0, 1, 3]
    wal.close()
    assert open_wal(tmp_path).stats.corrupt_segments == 0  # it was truncated


def test_corrupt_record_in_an_older_segment_skips_its_rest(tmp_path) -> None:
    wal = open_wal(tmp_path)
    wal.append([record(i) for i in range(3)])
    wal.close()
    wal = open_wal(tmp_path)
    wal.append([record(10)])
    wal.close()
    first = min(p for p in tmp_path.iterdir() if p.name.isdigit())
    data = bytearray(first.read_bytes())
    second_record = HEADER.size + len(record(0).payload)
    data[second_record + HEADER.size + 3] ^= 0xFF  # flip a payload bit of record 1
    first.write_bytes(bytes(data))

    wal = open_wal(tmp_path)
    assert wal.stats.corrupt_segments == 1
    assert drain(wal) == [0, 10]


def test_a_torn_position_resends_rather_than_skips(tmp_path) -> None:
    wal = open_wal(tmp_path)
    wal.append([record(i) for i in range(4)])
    _records, end = wal.read(max_samples=2)
    wal.ack(end)
    wal.close()
    position = tmp_path / "position"
    assert drain(open_wal(tmp_path)) == [2, 3]  # kept across a restart
    text = bytearray(position.read_bytes())
    text[20] = ord("9")  # a digit of the offset changed, as by a torn write
    position.write_bytes(bytes(text))
    assert drain(open_wal(tmp_path)) == [0, 1, 2, 3]
    position.write_text(f"{end[0]} {end[1]}\n")  # the format without a checksum
    assert drain(open_wal(tmp_path)) == [2, 3]


def test_zero_filled_tail_is_not_a_record(tmp_path) -> None:
    wal = open_wal(tmp_path)
    wal.append([record(1)])
    wal.close()
    segment = max(p for p in tmp_path.iterdir() if p.name.isdigit())
    with segment.open("ab") as f:
        f.write(b"\0" * 100)
    assert drain(open_wal(tmp_path)) == [1]


def test_disk_budget_drops_the_oldest_segment_and_counts_it(tmp_path) -> None:
    wal = open_wal(tmp_path, max_bytes=1 << 16, segment_bytes=1 << 13)
    for i in range(400):
        wal.append([record(i, samples=3)])
    assert wal.total_bytes <= 1 << 16
    kept = drain(wal)
    assert kept == list(range(kept[0], 400))  # the newest, contiguous
    assert wal.stats.dropped_samples == 3 * kept[0]
    assert wal.pending_samples == 3 * len(kept)


def test_read_never_mixes_shard_counts(tmp_path) -> None:
    wal = open_wal(tmp_path)
    wal.append([record(1, shards=1), record(2, shard=1, shards=2)])
    records, end = wal.read(100)
    assert [r.timestamp_ms for r in records] == [1]
    wal.ack(end)
    assert drain(wal) == [2]


# Relabelling (Prometheus semantics)

def labels(**kw: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(kw.items()))


def relabel(configs: list[dict], **kw: str):
    return Relabeler([RelabelConfig(**c) for c in configs]).apply(labels(**kw))


def test_relabel_keep_drop_are_anchored() -> None:
    keep = [{"action": "keep", "source_labels": ["__name__"], "regex": "node_load.*"}]
    assert relabel(keep, __name__="node_load1") is not None
    assert relabel(keep, __name__="x_node_load1") is None
    drop = [{"action": "drop", "source_labels": ["__name__", "mode"], "regex": "cpu;idle"}]
    assert relabel(drop, __name__="cpu", mode="idle") is None
    assert relabel(drop, __name__="cpu", mode="idle2") is not None


def test_relabel_replace_and_labeldrop() -> None:
    configs = [
        {"source_labels": ["device"], "regex": "(sd)(.)", "target_label": "disk",
         "replacement": "${2}-$1"},
        {"source_labels": ["mode"], "regex": "(.*)", "target_label": "mode", "replacement": ""},
        {"action": "labeldrop", "regex": "dev.*"},
    ]
    assert relabel(configs, __name__="m", device="sda", mode="x") == labels(
        __name__="m", disk="a-sd")
    # no match: replace leaves the series alone
    assert relabel(configs[:1], __name__="m", device="nvme0") == labels(
        __name__="m", device="nvme0")


# Wire format and the families it is built from

def encoder(shards: int = 1, limit: int = 1000, relabel: list[dict] | None = None) -> Encoder:
    return Encoder(Relabeler([RelabelConfig(**c) for c in relabel or []]), shards, limit)


def decoded(enc: Encoder, batches: list[Batch]) -> list:
    """The WriteRequests of each record, decoded with the classes compiled from remote.proto."""
    records, _dropped = enc.encode(batches)
    return [wire.decode(wire.decompress(r.payload)) for r in records]


def points(requests: list) -> dict:
    """series -> [(timestamp, value bits)] over the requests."""
    out: dict = {}
    for request in requests:
        for ts in request.timeseries:
            key = tuple((lbl.name, lbl.value) for lbl in ts.labels)
            out.setdefault(key, []).extend(
                (s.timestamp, struct.pack("<d", s.value)) for s in ts.samples)
    return out


def bits(value: float) -> bytes:
    return struct.pack("<d", value)


def test_hand_framed_requests_equal_the_generated_classes() -> None:
    long_value = "é" * 100  # lengths past one varint byte
    gauge = GaugeMetricFamily("node_x", "X.", labels=["zone", "path"])
    gauge.add_metric(["a", long_value], 0.0)
    gauge.add_metric(["b", ""], -1.5e300)
    counter = CounterMetricFamily("node_forks", "Forks.")
    counter.add_metric([], 7)
    external = {"instance": "h:1", "job": "a"}
    for ms in (5, 1_700_000_000_123, -1):
        (request,) = decoded(encoder(), [Batch("s", external, [gauge, counter], ms)])
        expected = wire.pb.WriteRequest()
        for labels, value in [
                ({"__name__": "node_x", "zone": "a", "path": long_value}, 0.0),
                ({"__name__": "node_x", "zone": "b"}, -1.5e300),  # empty value: no label
                ({"__name__": "node_forks_total"}, 7.0)]:
            ts = expected.timeseries.add()
            for k, v in sorted({**external, **labels}.items()):
                ts.labels.add(name=k, value=v)
            ts.samples.add(value=value, timestamp=ms)
        assert request == expected
    nan = GaugeMetricFamily("node_nan", "NaN.", value=math.nan)
    (request,) = decoded(encoder(), [Batch("s", {}, [nan], 1)])
    assert math.isnan(request.timeseries[0].samples[0].value)
    assert bits(request.timeseries[0].samples[0].value) != STALE_NAN  # a value, not a marker


def test_unchanged_series_are_not_encoded_again(monkeypatch) -> None:
    calls = []
    real = encode.encode_labels
    monkeypatch.setattr(encode, "encode_labels", lambda labels: calls.append(labels) or
                        real(labels))
    gauge = GaugeMetricFamily("m", "M.", labels=["i"])
    for i in range(50):
        gauge.add_metric([str(i)], i)
    enc = encoder(shards=3)
    first = points(decoded(enc, [Batch("s", {}, [gauge], 1_000)]))
    assert len(calls) == 50
    again = GaugeMetricFamily("m", "M.", labels=["i"])
    for i in range(51):  # the same 50 with new values, and one new series
        again.add_metric([str(i)], i * 2)
    second = points(decoded(enc, [Batch("s", {}, [again], 2_000)]))
    assert len(calls) == 51
    assert second[(("__name__", "m"), ("i", "7"))] == [(2_000, bits(14.0))]
    assert set(second) == set(first) | {(("__name__", "m"), ("i", "50"))}
    # A timestamp of another varint length rebuilds the cached heads, not the labels.
    third = points(decoded(enc, [Batch("s", {}, [again], 1_700_000_000_000)]))
    assert len(calls) == 51 and len(third) == 51


def test_each_series_keeps_its_shard_and_records_respect_the_batch_size() -> None:
    gauge = GaugeMetricFamily("m", "M.", labels=["i"])
    for i in range(100):
        gauge.add_metric([str(i)], i)
    enc = encoder(shards=4, limit=10)
    shards: dict = {}
    for ms in (1, 2):
        records, _ = enc.encode([Batch("s", {}, [gauge], ms)])
        assert all(r.samples <= 10 and r.shards == 4 for r in records)
        assert sum(r.samples for r in records) == 100
        for record in records:
            for ts in wire.decode(wire.decompress(record.payload)).timeseries:
                key = tuple((lbl.name, lbl.value) for lbl in ts.labels)
                assert shards.setdefault(key, record.shard) == record.shard
    assert len(set(shards.values())) > 1


def test_stale_markers_when_a_series_or_a_source_goes() -> None:
    def family(*values: str) -> GaugeMetricFamily:
        gauge = GaugeMetricFamily("node_x", "X.", labels=["dev"])
        for value in values:
            gauge.add_metric([value], 1)
        return gauge

    relabel = [{"action": "drop", "source_labels": ["dev"], "regex": "skip"}]
    enc = encoder(relabel=relabel)
    sda, sdb = (("__name__", "node_x"), ("dev", "sda")), (("__name__", "node_x"), ("dev", "sdb"))
    decoded(enc, [Batch("disk", {}, [family("sda", "sdb", "skip")], 1_000)])
    got = points(decoded(enc, [Batch("disk", {}, [family("sda")], 2_000)]))
    assert got == {sda: [(2_000, bits(1))], sdb: [(2_000, STALE_NAN)]}  # none for "skip"
    got = points(decoded(enc, [Batch("disk", {}, [family("sda", "sdb")], 3_000)]))
    assert got == {sda: [(3_000, bits(1))], sdb: [(3_000, bits(1))]}  # back again
    sdc = (("__name__", "node_x"), ("dev", "sdc"))
    got = points(decoded(enc, [Batch("disk", {}, [family("sda", "sdc")], 3_500)]))
    assert got == {sda: [(3_500, bits(1))], sdc: [(3_500, bits(1))], sdb: [(3_500, STALE_NAN)]}
    got = points(decoded(enc, [Batch("disk", {}, [family("sda", "sdb")], 3_600)]))
    assert got == {sda: [(3_600, bits(1))], sdb: [(3_600, bits(1))], sdc: [(3_600, STALE_NAN)]}
    got = points(decoded(enc, [Batch("disk", {}, [family("sda")], 3_700)]))  # a shorter tick
    assert got == {sda: [(3_700, bits(1))], sdb: [(3_700, STALE_NAN)]}
    got = points(decoded(enc, [Batch("disk", {}, [family("sda", "sdb")], 3_800)]))
    assert got == {sda: [(3_800, bits(1))], sdb: [(3_800, bits(1))]}
    records, _ = enc.encode([Batch("disk", {}, None, 4_000)])  # the whole source gone
    got = points([wire.decode(wire.decompress(r.payload)) for r in records])
    assert got == {sda: [(4_000, STALE_NAN)], sdb: [(4_000, STALE_NAN)]}
    assert records[0].timestamp_ms == 4_000
    assert enc.encode([Batch("disk", {}, None, 5_000)]) == ([], 0)  # forgotten: nothing more
    assert enc.series == 0


async def test_pusher_labels_external_own_and_ssh_instance(tmp_path) -> None:
    gauge = GaugeMetricFamily("node_load1", "1m load average.", value=0.5)
    counter = CounterMetricFamily("node_forks", "Forks.", labels=["instance", "empty"])
    counter.add_metric(["mine", ""], 3)
    registry = Registry()
    registry.publish(Snapshot.of("load", [gauge, counter]))
    registry.publish_target(TargetSnapshot("web1:22", (("target", "web1:22"),),
                                           {"node": (gauge,)}))
    config = RemoteWriteConfig(directory=tmp_path, external_labels={"job": "hostagent"})
    pusher = Pusher(config, registry, "127.0.0.1:9110")
    capture = Capture()
    pusher.queues = [capture]  # type: ignore[list-item]
    assert await pusher.feed_once() == 2
    got = points(decoded(encoder(), capture.batches))
    instance = default_external_labels("127.0.0.1:9110")["instance"]
    assert set(got) == {
        (("__name__", "node_load1"), ("instance", instance), ("job", "hostagent")),
        # the series' own label wins; empty values are no labels
        (("__name__", "node_forks_total"), ("instance", "mine"), ("job", "hostagent")),
        (("__name__", "node_load1"), ("instance", "web1:22"), ("job", "hostagent"),
         ("target", "web1:22"))}
    meta = metadata_of(registry.snapshots["load"].families)
    assert meta == [("node_forks", "counter", "Forks.", ""),
                    ("node_load1", "gauge", "1m load average.", "")]
    request = wire.decode(wire.encode_metadata(meta))
    assert request.metadata[0].type == wire.pb.MetricMetadata.COUNTER
    assert request.metadata[1].metric_family_name == "node_load1"


async def test_pusher_applies_the_exposition_clash_check_when_names_change(tmp_path) -> None:
    registry = Registry()
    registry.publish(Snapshot.of("load", [GaugeMetricFamily("node_load1", "Load.", value=1)]))
    registry.publish(Snapshot.of("textfile", [GaugeMetricFamily("site_x", "S.", value=3)]))
    asked: list[dict[str, int]] = []

    def own(dropped):
        asked.append(dict(dropped))
        return [GaugeMetricFamily("hostagent_collector_dropped_families", "D.",
                                  value=sum(dropped.values()))]

    pusher = Pusher(RemoteWriteConfig(directory=tmp_path), registry, "127.0.0.1:9110",
                    own=own)
    local = dict(registry.snapshots)
    assert {k: [f.name for f in v] for k, v in pusher._exposed(local, True)[0].items()} == {
        "hostagent": ["hostagent_collector_dropped_families"], "load": ["node_load1"],
        "textfile": ["site_x"]}
    assert asked == [{}]
    pusher._own_families = pusher._exposed(local, True)[0]["hostagent"]
    # The same names again (the check's outcome is kept), then a textfile family that clashes.
    assert [f.name for f in pusher._exposed(local, False)[0]["textfile"]] == ["site_x"]
    registry.publish(Snapshot.of("textfile", [GaugeMetricFamily("node_load1", "L.", value=9),
                                              GaugeMetricFamily("site_x", "S.", value=3)]))
    exposed, fresh = pusher._exposed(dict(registry.snapshots), True)
    assert fresh
    assert [f.name for f in exposed["textfile"]] == ["site_x"]
    assert asked[-1] == {"textfile": 1}
    assert exposed["hostagent"][0].samples[0].value == 1


async def test_own_series_failing_does_not_stop_the_collectors_series(tmp_path, caplog) -> None:
    registry = Registry()
    registry.publish(Snapshot.of("load", [GaugeMetricFamily("node_load1", "Load.", value=1)]))

    def own(dropped):
        raise OSError("no /proc/self")

    pusher = Pusher(RemoteWriteConfig(directory=tmp_path), registry, "127.0.0.1:9110",
                    own=own)
    capture = Capture()
    pusher.queues = [capture]  # type: ignore[list-item]
    assert await pusher.feed_once() == 1
    assert [b.source for b in capture.batches] == ["load"]
    assert "own series failed" in caplog.text


class Capture:
    """Stands in for a queue: keeps what the pusher hands over."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []

    async def append(self, batches):
        built = batches() if callable(batches) else batches
        self.batches += built
        return built


def test_default_external_labels() -> None:
    assert default_external_labels(":9110", "web1") == {"instance": "web1:9110",
                                                         "job": "hostagent"}


# Configuration

def test_remote_write_config_errors_name_the_field() -> None:
    cases = {
        "remote_write.endpoints.0.url": {"url": "ftp://x"},
        "remote_write.endpoints.0.queue_config.shards": {"url": "http://x", "queue_config":
                                                         {"shards": 0}},
        "remote_write.endpoints.0.write_relabel_configs.0": {
            "url": "http://x", "write_relabel_configs": [{"action": "replace"}]},
        "remote_write.endpoints.0.headers": {"url": "http://x",
                                             "headers": {"Content-Type": "x"}},
        "remote_write.endpoints.0.wal": {"url": "http://x", "wal": {"max_bytes": 1 << 16,
                                                                    "segment_bytes": 1 << 16}},
    }
    for field, endpoint in cases.items():
        with pytest.raises(ConfigError) as info:
            build({"remote_write": {"endpoints": [endpoint]}})
        assert any(p.startswith(field + ":") for p in info.value.problems), info.value.problems
    with pytest.raises(ConfigError, match="duplicate endpoint names"):
        build({"remote_write": {"endpoints": [{"url": "http://a/w"}, {"url": "http://a/w"}]}})


def test_endpoint_name_and_url_never_carry_credentials() -> None:
    config = build({"remote_write": {"endpoints": [
        {"url": "https://user:s3cret@metrics.example:8428/api/v1/write"}]}})
    endpoint = config.remote_write.endpoints[0]
    assert endpoint_name(endpoint) == "metrics.example_8428_api_v1_write"
    assert redacted_url(endpoint.url) == "https://metrics.example:8428/api/v1/write"
