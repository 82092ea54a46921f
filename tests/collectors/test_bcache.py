from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric

from agent.collectors.bcache import (
    BcacheCollector,
    BcacheError,
    dehumanize,
    parse_priority_stats,
    parse_writeback_rate_debug,
)
from tests.collectors.peer import assert_matches_peer
from tests.golden import FIXTURES, assert_golden

BCACHE = FIXTURES / "bcache"
UUID = "deaddd54-c735-46d5-868e-f331c5fd7c74"


def series(families: list[Metric]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in families for s in f.samples}


def test_fixture_host_with_priority_stats() -> None:
    families = BcacheCollector(BCACHE / "sys", priority_stats=True).collect()
    got = series(families)
    cs = (("uuid", UUID),)
    bdev = (("backing_device", "bdev0"), ("uuid", UUID))
    cache = (("cache_device", "cache0"), ("uuid", UUID))
    # As node_exporter's e2e output on procfs's fixture cache set.
    assert got[("node_bcache_btree_read_average_duration_seconds", cs)] == pytest.approx(
        1.305e-06)
    assert got[("node_bcache_cache_available_percent", cs)] == 100
    assert got[("node_bcache_active_journal_entries", cs)] == 1
    assert got[("node_bcache_cache_hits_total", bdev)] == 546
    assert got[("node_bcache_metadata_written_bytes_total", cache)] == 512
    assert got[("node_bcache_priority_stats_unused_percent", cache)] == 99
    assert got[("node_bcache_priority_stats_metadata_percent", cache)] == 0
    # writeback_rate_debug, humanized by bch_hprint.
    assert got[("node_bcache_dirty_target_bytes", bdev)] == 21894266880
    assert got[("node_bcache_writeback_rate", bdev)] == 1150976
    assert got[("node_bcache_writeback_rate_proportional_term", bdev)] == 437748
    assert got[("node_bcache_writeback_rate_integral_term", bdev)] == 808960
    assert got[("node_bcache_writeback_change", bdev)] == 329204
    # "4.5M" is 4 + 5/10.24 MiB: bch_hprint prints 1024ths in steps of about ten.
    assert got[("node_bcache_bypassed_bytes_total", bdev)] == 4706304
    assert got[("node_bcache_cache_readaheads_total", bdev)] == 13
    assert {f.name: f.type for f in families}["node_bcache_written_bytes"] == "counter"
    assert_golden(families, "bcache")


def test_priority_stats_only_with_the_flag(tmp_path: Path) -> None:
    tree = tmp_path / "sys"
    shutil.copytree(BCACHE / "sys", tree)
    cache_set = tree / "fs/bcache" / UUID
    (cache_set / "cache0/priority_stats").unlink()  # never read without the flag
    (cache_set / "bdev0/stats_total/cache_readaheads").write_text("0\n")
    names = {f.name for f in BcacheCollector(tree).collect()}
    assert not any("priority" in n for n in names)
    assert "node_bcache_cache_readaheads" not in names  # zero readaheads: no series
    assert "node_bcache_dirty_data_bytes" in names
    with pytest.raises(BcacheError, match="priority_stats"):
        BcacheCollector(tree, priority_stats=True).collect()


def test_missing_attribute_fails_as_node_exporter(tmp_path: Path) -> None:
    tree = tmp_path / "sys"
    shutil.copytree(BCACHE / "sys", tree)
    (tree / "fs/bcache" / UUID / "internal/btree_nodes").unlink()
    with pytest.raises(BcacheError, match="btree_nodes"):
        BcacheCollector(tree).collect()


@pytest.mark.parametrize(("text", "value"), [
    ("542k", 555008), ("322M", 337641472), ("1.1k", 1124), ("1.9k", 1924),
    ("1.10k", 2024), ("17", 17), ("0.0k", 0),
])
def test_dehumanize(text: str, value: int) -> None:
    assert dehumanize(text) == value


def test_dehumanize_rejects_empty() -> None:
    with pytest.raises(BcacheError):
        dehumanize("")


def test_writeback_rate_debug_signed_terms() -> None:
    wrd = parse_writeback_rate_debug(
        "rate:\t\t4.0M/sec\ndirty:\t\t954.7M\ntarget:\t\t36.7G\nproportional:\t-920.7M\n"
        "integral:\t-17.1M\nchange:\t\t0.0k/sec\nnext io:\t-7969ms\n")
    assert wrd.rate == 4 * 2**20
    assert wrd.proportional == -int((920 + 7 / 10.24) * 2**20)
    assert wrd.integral == -int((17 + 1 / 10.24) * 2**20)
    assert wrd.next_io == -7969


def test_priority_stats_lines() -> None:
    assert parse_priority_stats("Unused:  7%\nClean: 3%\nMetadata: 5%\n") == (7, 5)
    with pytest.raises(BcacheError):
        parse_priority_stats("Unused: x%\n")


def test_no_bcache_means_no_series(tmp_path: Path) -> None:
    assert BcacheCollector(tmp_path).collect() == []
    (tmp_path / "fs/bcache").mkdir(parents=True)
    (tmp_path / "fs/bcache/register").write_text("")
    assert BcacheCollector(tmp_path).collect() == []


def test_matches_node_exporter_on_the_fixture(node_exporter) -> None:
    families = BcacheCollector(BCACHE / "sys", priority_stats=True).collect()
    assert_matches_peer(node_exporter, "bcache",
                        [f"--path.sysfs={BCACHE / 'sys'}", "--collector.bcache.priorityStats"],
                        families, "node_bcache_")
