"""processes: node_processes_* from /proc/[pid]/stat and /proc/[pid]/task/*/stat, with the
kernel's limits from /proc/sys/kernel/{threads-max,pid_max}, as node_exporter's processes
collector.

A process or thread that exits between the directory listing and the read is skipped, as
node_exporter skips it (ENOENT, ESRCH); any other read error fails the run.
"""

from __future__ import annotations

import errno
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from agent.collectors.common import go_order

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

_GONE = (errno.ENOENT, errno.ESRCH)


@dataclass(frozen=True)
class ProcStat:
    state: str
    num_threads: int


def parse_proc_stat(text: str) -> ProcStat:
    """/proc/[pid]/stat: the comm field may hold spaces and parentheses, so the fields after
    it start behind the last ')'. State is field 3, num_threads field 20."""
    close = text.rfind(")")
    if close < 0:
        raise ValueError("invalid /proc/[pid]/stat: no ')'")
    fields = text[close + 1:].split()
    if len(fields) < 18:
        raise ValueError(f"invalid /proc/[pid]/stat: {len(fields)} fields after comm")
    return ProcStat(fields[0], int(fields[17]))


@dataclass
class ProcessCounts:
    pids: int = 0
    threads: int = 0
    states: Counter[str] = field(default_factory=Counter)
    thread_states: Counter[str] = field(default_factory=Counter)


def _numeric_entries(directory: Path) -> list[int]:
    return sorted(int(name) for name in os.listdir(directory) if name.isdigit())


def _read_stat(path: Path) -> ProcStat | None:
    """None when the process or thread has gone."""
    try:
        return parse_proc_stat(path.read_text(errors="replace"))
    except OSError as exc:
        if exc.errno in _GONE:
            return None
        raise


def count_processes(procfs: Path) -> ProcessCounts:
    counts = ProcessCounts()
    for pid in _numeric_entries(procfs):
        stat = _read_stat(procfs / str(pid) / "stat")
        if stat is None:
            continue
        counts.pids += 1
        counts.states[stat.state] += 1
        counts.threads += stat.num_threads
        try:
            tids = _numeric_entries(procfs / str(pid) / "task")
        except OSError as exc:
            if exc.errno not in _GONE:
                raise
            # node_exporter counts the process's own state when its tasks are gone.
            counts.thread_states[stat.state] += 1
            continue
        for tid in tids:
            if tid == pid:
                counts.thread_states[stat.state] += 1
                continue
            thread = _read_stat(procfs / str(pid) / "task" / str(tid) / "stat")
            if thread is not None:
                counts.thread_states[thread.state] += 1
    return counts


def processes_families(counts: ProcessCounts, max_threads: int, pid_max: int) -> list[Metric]:
    states = GaugeMetricFamily("node_processes_state", "Number of processes in each state.",
                               labels=["state"])
    for state, number in counts.states.items():
        states.add_metric([state], number)
    thread_states = GaugeMetricFamily("node_processes_threads_state",
                                      "Number of threads in each state.",
                                      labels=["thread_state"])
    for state, number in counts.thread_states.items():
        thread_states.add_metric([state], number)
    return go_order([
        GaugeMetricFamily("node_processes_threads", "Allocated threads in system",
                          value=counts.threads),
        GaugeMetricFamily("node_processes_max_threads", "Limit of threads in the system",
                          value=max_threads),
        states,
        thread_states,
        GaugeMetricFamily("node_processes_pids", "Number of PIDs", value=counts.pids),
        GaugeMetricFamily("node_processes_max_processes", "Number of max PIDs limit",
                          value=pid_max),
    ])


class ProcessesCollector:
    def __init__(self, procfs: Path) -> None:
        self._procfs = procfs

    def collect(self) -> list[Metric]:
        counts = count_processes(self._procfs)
        kernel = self._procfs / "sys" / "kernel"
        max_threads = int((kernel / "threads-max").read_text())
        pid_max = int((kernel / "pid_max").read_text())
        return processes_families(counts, max_threads, pid_max)


def create(context: Context, settings: Any) -> ProcessesCollector:
    return ProcessesCollector(context.procfs)
