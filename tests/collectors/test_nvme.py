from __future__ import annotations

import glob
from pathlib import Path

from agent.collectors.nvme import NvmeCollector, read_controller
from tests.collectors.peer import assert_matches_peer
from tests.golden import FIXTURES, assert_golden

SYS = FIXTURES / "nvme" / "sys"


def test_golden() -> None:
    families = NvmeCollector(SYS).collect()
    by_name = {f.name: f.samples for f in families}
    info = {s.labels["device"]: s.labels for s in by_name["node_nvme_info"]}
    assert info["nvme0"]["model"] == "Samsung SSD 970 PRO 512GB"  # padding trimmed
    assert info["nvme1"]["cntlid"] == "0"  # unreadable counts as 0, as node_exporter
    assert [(s.labels["nsid"], s.labels["ana_state"])
            for s in by_name["node_nvme_namespace_info"]] == [("1", "optimized"),
                                                               ("2", "unknown")]
    assert by_name["node_nvme_namespace_capacity_bytes"][0].value == 3906250000 * 4096
    assert_golden(families, "nvme")


def test_no_nvme_class_is_no_data(tmp_path: Path) -> None:
    assert NvmeCollector(tmp_path).collect() == []


def test_matches_node_exporter_on_the_fixture(node_exporter) -> None:
    # The cntlid label and the namespace series arrived after 1.5: compare the rest.
    families = [f for f in NvmeCollector(SYS).collect() if f.name == "node_nvme_info"]
    for sample in families[0].samples:
        del sample.labels["cntlid"]
    assert_matches_peer(node_exporter, "nvme", [f"--path.sysfs={SYS}"], families, "node_nvme_")


def test_namespaces_are_what_glob_finds(tmp_path: Path) -> None:
    names = ("nvme0c0n1", "nvme0c12n3x", "nvme0n1", "nvmec0n1", "nvme0c0n", "nvme1c1nX",
             "nvme0c0n\u0661", "nvme0cXc1n2")
    for name in names:
        (tmp_path / name).mkdir()
    found = [name for name, _ in read_controller(str(tmp_path))[1]]
    pattern = f"{tmp_path}/nvme[0-9]*c[0-9]*n[0-9]*"
    assert found == [Path(path).name for path in sorted(glob.glob(pattern))]
    assert found == ["nvme0c0n1", "nvme0c12n3x", "nvme0cXc1n2"]
