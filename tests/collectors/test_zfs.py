from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric

from agent.collectors.zfs import ZfsCollector, parse_kstat, parse_objset, parse_pool_io
from tests.collectors.peer import assert_matches_peer
from tests.golden import FIXTURES, assert_golden

ZFS = FIXTURES / "zfs"


def series(families: list[Metric]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in families for s in f.samples}


def test_fixture_host() -> None:
    families = ZfsCollector(ZFS / "proc").collect()
    got = series(families)
    # Values and help as node_exporter's e2e output on the same kstats.
    assert got[("node_zfs_arc_hits", ())] == 8772612
    assert got[("node_zfs_arc_memory_available_bytes", ())] == float(-922337203685477580)
    assert got[("node_zfs_zil_zil_itx_needcopy_bytes", ())] == float(18446744073709537686)
    assert got[("node_zfs_fm_erpt_dropped", ())] == 18
    assert got[("node_zfs_dbuf_hash_dbuf_level_1_bytes", ())] == 1310720
    assert got[("node_zfs_zpool_nwritten", (("zpool", "poolz1"),))] == 2680501248
    assert got[("node_zfs_zpool_rupdate", (("zpool", "pool1"),))] == 79210489849220
    help_text = {f.name: f.documentation for f in families}
    assert help_text["node_zfs_fm_erpt_set_failed"] == "kstat.zfs.misc.fm.erpt-set-failed"
    assert help_text["node_zfs_dbuf_hash_hits"] == "kstat.zfs.misc.dbufstats.hash_hits"
    assert help_text["node_zfs_zpool_dataset_nread"] == "kstat.zfs.misc.objset.nread"
    types = {f.name: f.type for f in families}
    assert types["node_zfs_arc_size"] == "unknown"
    assert types["node_zfs_zpool_state"] == "gauge"
    # Datasets, including a name with spaces and one starting like the kstat's name.
    writes = {dict(k[1])["dataset"]: v for k, v in got.items()
              if k[0] == "node_zfs_zpool_dataset_writes"}
    assert writes == {"pool1": 0, "pool1/dataset1": 4, "pool3": 0,
                      "pool3/dataset with  space": 4, "poolz1": 0, "poolz1/dataset1": 10,
                      "data": 0, "data/vm-1101-disk-0": 4}
    # One series per known state, 1 for the pool's own (SUSPENDED, DEGRADED).
    states = {(dict(k[1])["zpool"], dict(k[1])["state"]): v for k, v in got.items()
              if k[0] == "node_zfs_zpool_state"}
    assert len(states) == 14
    assert sorted(s for (_, s), v in states.items() if v == 1) == ["degraded", "suspended"]
    assert states[("poolz1", "degraded")] == 1 and states[("pool2", "suspended")] == 1
    assert states[("poolz1", "online")] == 0
    assert_golden(families, "zfs")


def test_unknown_state_is_all_zero(tmp_path: Path) -> None:
    (tmp_path / "spl/kstat/zfs/tank").mkdir(parents=True)
    (tmp_path / "spl/kstat/zfs/tank/state").write_text("UNKNOWN\n")
    families = ZfsCollector(tmp_path).collect()
    assert [s.value for f in families for s in f.samples] == [0.0] * 7


def test_kstat_types_and_header() -> None:
    text = ("6 1 0x01 3 144 1 2\nname type data\na 4 1\nb 3 -2\nc 7 text\nd 1 5\n"
            "e-f 4 18446744073709551615\n")
    assert parse_kstat(text) == [("a", 1), ("b", -2), ("e-f", 2**64 - 1)]
    with pytest.raises(ValueError):
        parse_kstat("a 4 1\n")  # no header: node_exporter rejects the file
    with pytest.raises(ValueError):
        parse_kstat("name type data\na 4 -1\n")  # uint64 with a sign
    with pytest.raises(ValueError):
        parse_kstat("name type data\na 4 18446744073709551616\n")


def test_pool_io_and_objset() -> None:
    assert parse_pool_io("x\n") == []
    with pytest.raises(ValueError):
        parse_pool_io("nread nwritten reads writes wtime wlentime wupdate rtime rlentime "
                      "rupdate wcnt rcnt\n1 2 3\n")
    name, values = parse_objset("h\nname type data\ndataset_name 7 data\nwrites 4 3\n")
    assert (name, values) == ("data", [("writes", 3)])


def test_bad_file_is_skipped_not_the_collector(tmp_path: Path) -> None:
    base = tmp_path / "spl/kstat/zfs"
    base.mkdir(parents=True)
    (base / "arcstats").write_text("name type data\nhits 4 x\n")
    (base / "zil").write_text("name type data\nzil_commit_count 4 10\n")
    families = ZfsCollector(tmp_path).collect()
    assert [f.name for f in families] == ["node_zfs_zil_zil_commit_count"]


def test_no_zfs_module_means_no_series(tmp_path: Path) -> None:
    assert ZfsCollector(tmp_path).collect() == []



def newer_than_1_5(name: str, labels: dict[str, str]) -> bool:
    """1.5 looked for dbuf_stats (the kstat is dbufstats), skipped int64 kstats and had no
    pool state."""
    return (name.startswith("node_zfs_dbuf_") or name == "node_zfs_arc_memory_available_bytes"
            or name == "node_zfs_zpool_state")


def test_matches_node_exporter_on_the_fixture(node_exporter, tmp_path: Path) -> None:
    # 1.5 cuts a dataset name at its first space: pool3 ("dataset with  space") is left out.
    proc = tmp_path / "proc"
    shutil.copytree(ZFS / "proc", proc)
    shutil.rmtree(proc / "spl/kstat/zfs/pool3")
    assert_matches_peer(node_exporter, "zfs", [f"--path.procfs={proc}"],
                        ZfsCollector(proc).collect(), "node_zfs_", newer_than_1_5)
