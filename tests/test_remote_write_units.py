"""Remote write parts on their own: the write-ahead log, relabelling, the wire format, config."""

from __future__ import annotations

import math

import cramjam
import pytest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily

from agent.config import ConfigError, build
from agent.exposition.registry import Snapshot
from agent.remote_write import wire
from agent.remote_write.pusher import default_external_labels, metadata_of, series_of
from agent.remote_write.relabel import Relabeler
from agent.remote_write.settings import RelabelConfig, endpoint_name, redacted_url
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

def test_write_request_round_trip_with_sorted_labels() -> None:
    series = [(labels(__name__="up", instance="h:1", job="a"), 1.0),
              (labels(__name__="nan", job="a"), math.nan)]
    body = wire.compress(wire.encode_samples(series, 1234))
    assert bytes(cramjam.snappy.decompress_raw(body)) == wire.decompress(body)
    request = wire.decode(wire.decompress(body))
    first = request.timeseries[0]
    assert [(lbl.name, lbl.value) for lbl in first.labels] == [
        ("__name__", "up"), ("instance", "h:1"), ("job", "a")]
    assert [(s.value, s.timestamp) for s in first.samples] == [(1.0, 1234)]
    assert math.isnan(request.timeseries[1].samples[0].value)


def test_series_of_snapshot_external_and_ssh_instance() -> None:
    gauge = GaugeMetricFamily("node_load1", "1m load average.", value=0.5)
    counter = CounterMetricFamily("node_forks", "Forks.", labels=["instance", "empty"])
    counter.add_metric(["mine", ""], 3)
    external = {"instance": "host:9110", "job": "hostagent"}
    local = series_of(Snapshot.of("load", [gauge, counter]), external)
    assert local == [
        (labels(__name__="node_load1", instance="host:9110", job="hostagent"), 0.5),
        # the series' own label wins; empty values are no labels
        (labels(__name__="node_forks_total", instance="mine", job="hostagent"), 3.0)]
    remote = series_of(Snapshot.of("ssh:web1:22", [gauge]), external)
    assert dict(remote[0][0])["instance"] == "web1:22"
    meta = metadata_of([Snapshot.of("load", [gauge, counter])])
    assert meta == [("node_forks", "counter", "Forks.", ""),
                    ("node_load1", "gauge", "1m load average.", "")]
    request = wire.decode(wire.encode_metadata(meta))
    assert request.metadata[0].type == wire.pb.MetricMetadata.COUNTER
    assert request.metadata[1].metric_family_name == "node_load1"


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
