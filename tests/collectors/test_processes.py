from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric

from agent.collectors.processes import ProcessesCollector, count_processes, parse_proc_stat
from tests.golden import FIXTURES, assert_golden

PROC = FIXTURES / "processes" / "proc"


def values(families: list[Metric]) -> dict[tuple[str, ...], float]:
    return {(s.name, *s.labels.values()): s.value for f in families for s in f.samples}


def test_golden() -> None:
    families = ProcessesCollector(PROC).collect()
    assert values(families) == {
        ("node_processes_max_processes",): 4194304,
        ("node_processes_max_threads",): 63470,
        ("node_processes_pids",): 6,
        ("node_processes_state", "I"): 1, ("node_processes_state", "R"): 1,
        ("node_processes_state", "S"): 3, ("node_processes_state", "Z"): 1,
        # num_threads of every process, as the kernel counts them (700's fourth thread,
        # gone before its stat was read, included).
        ("node_processes_threads",): 11,
        ("node_processes_threads_state", "D"): 1, ("node_processes_threads_state", "I"): 1,
        ("node_processes_threads_state", "R"): 3, ("node_processes_threads_state", "S"): 4,
        ("node_processes_threads_state", "Z"): 1,
    }
    assert_golden(families, "processes")


def test_comm_with_spaces_and_parentheses() -> None:
    stat = parse_proc_stat((PROC / "400" / "stat").read_text())
    assert (stat.state, stat.num_threads) == ("S", 3)
    with pytest.raises(ValueError, match="fields"):
        parse_proc_stat("1 (x) S 0 1")


def test_vanished_processes_and_threads_are_skipped(tmp_path: Path) -> None:
    shutil.copytree(PROC, tmp_path, dirs_exist_ok=True)
    shutil.rmtree(tmp_path / "400" / "task")  # the process exits after its stat was read
    counts = count_processes(tmp_path)
    assert counts.pids == 6
    # Its own state is counted for it, as node_exporter does when the tasks are gone.
    assert counts.thread_states["S"] == 4 and counts.thread_states["D"] == 0


def test_a_missing_limit_fails_the_run(tmp_path: Path) -> None:
    shutil.copytree(PROC, tmp_path, dirs_exist_ok=True)
    (tmp_path / "sys/kernel/pid_max").unlink()
    with pytest.raises(FileNotFoundError):
        ProcessesCollector(tmp_path).collect()


def test_live_host_reads_without_errors() -> None:
    families = ProcessesCollector(Path("/proc")).collect()
    found = values(families)
    assert found[("node_processes_pids",)] >= 1
    assert found[("node_processes_threads",)] >= found[("node_processes_pids",)]


def test_matches_node_exporter_on_the_fixture(node_exporter) -> None:  # type: ignore[no-untyped-def]
    from agent.config import Config
    from tests.test_differential import compare

    url = node_exporter("--collector.disable-defaults", "--collector.processes",
                        f"--path.procfs={PROC}")
    compare("processes", Config.model_validate({"paths": {"procfs": str(PROC)}}), url)
