"""process_groups: every process read once per cycle and aggregated per group, with
process-exporter's configuration, metric names and counter semantics (a group's counters count
what its members used since they were first seen, never decrease when members exit, and a
group keeps its counters after its last member is gone); per-service accounting from systemd's
cgroups; and the top consumers of CPU and memory, bounded at 2 x top_n series.

/proc is read directly rather than through psutil: the series need smaps_rollup, the fd limit
and per-thread context switches, which psutil reads through full smaps (much slower) or not
at all; bench/processes.py measures both. Only stat is read for every process each cycle.
A process that exits while it is read is skipped, never an error.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import pwd
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from agent.collectors.common import bare_counter
from agent.collectors.process_matching import (
    Matcher,
    ProcessIdentity,
    group_of,
    load_config_file,
    parse_process_names,
)
from agent.collectors.services import ServiceAccounting

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

STATES = {"R": "Running", "S": "Sleeping", "D": "Waiting", "Z": "Zombie"}
STATE_NAMES = ("Other", "Running", "Sleeping", "Waiting", "Zombie")
# Go's zero time.Time as a Unix time: what process-exporter reports as the oldest start time
# of a group that has no member left.
GO_ZERO_TIME = -62135596800.0
COUNTERS = ("cpu_user", "cpu_system", "read_bytes", "write_bytes", "major_faults",
            "minor_faults", "ctx_voluntary", "ctx_nonvoluntary")


@dataclass(slots=True)
class Stat:
    """The fields of /proc/PID/stat this collector uses, in seconds and bytes."""

    comm: str
    state: str
    ppid: int
    minor_faults: float
    major_faults: float
    cpu_user: float
    cpu_system: float
    threads: int
    start_ticks: int
    virtual: float
    resident: float


def parse_stat(text: str, ticks: float, page_size: int) -> Stat:
    """'pid (comm) state ppid ...': comm may hold spaces and parentheses: split at the last ')'."""
    open_paren, close_paren = text.index("("), text.rindex(")")
    fields = text[close_paren + 2:].split()
    return Stat(comm=text[open_paren + 1:close_paren], state=fields[0], ppid=int(fields[1]),
                minor_faults=float(fields[7]), major_faults=float(fields[9]),
                cpu_user=int(fields[11]) / ticks, cpu_system=int(fields[12]) / ticks,
                threads=int(fields[17]), start_ticks=int(fields[19]),
                virtual=float(fields[20]), resident=float(fields[21]) * page_size)


def parse_status(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key] = value.strip()
    return out


def parse_io(text: str) -> tuple[float, float]:
    values = parse_status(text)
    return float(values["read_bytes"]), float(values["write_bytes"])


def parse_open_files_limit(text: str) -> float | None:
    for line in text.splitlines():
        if line.startswith("Max open files"):
            soft = line[len("Max open files"):].split()[0]
            return float("inf") if soft == "unlimited" else float(soft)
    return None


def parse_smaps_rollup(text: str) -> tuple[float, float]:
    """(Pss, SwapPss) in bytes."""
    values = parse_status(text)

    def kib(key: str) -> float:
        return float(values.get(key, "0 kB").split()[0]) * 1024

    return kib("Pss"), kib("SwapPss")


THREAD_COUNTERS = ("cpu_user", "cpu_system", "read_bytes", "write_bytes", "major_faults",
                   "minor_faults", "ctx_voluntary", "ctx_nonvoluntary")


@dataclass(slots=True)
class ThreadSample:
    tid: int
    name: str
    counters: dict[str, float]
    wchan: str  # "" while running
    state: str


@dataclass
class Sample:
    """One process in one cycle: its gauges and cumulative counters."""

    start_time: float
    stat: Stat
    counters: dict[str, float]
    swapped: float = 0.0
    proportional: float = 0.0
    proportional_swap: float = 0.0
    open_fds: int = -1
    fd_limit: float | None = None
    threads: list[ThreadSample] = field(default_factory=list)  # only when more than one
    wchans: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class ThreadGroup:
    """The threads of one group that share a name."""

    count: int = 0
    counters: dict[str, float] = field(default_factory=lambda: dict.fromkeys(THREAD_COUNTERS,
                                                                               0.0))


@dataclass
class Group:
    procs: int = 0
    num_threads: int = 0
    resident: float = 0.0
    virtual: float = 0.0
    swapped: float = 0.0
    proportional: float = 0.0
    proportional_swap: float = 0.0
    open_fds: int = 0
    worst_fd_ratio: float = 0.0
    oldest_start: float | None = None
    states: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATE_NAMES, 0))
    counters: dict[str, float] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0.0))
    wchans: dict[str, int] = field(default_factory=dict)
    threads: dict[str, ThreadGroup] = field(default_factory=dict)  # by thread name


class ProcReader:
    """Reads /proc. Identity (comm, cmdline, user, start time) is read once per process."""

    def __init__(self, procfs: Path) -> None:
        self.procfs = procfs
        self.ticks = float(os.sysconf("SC_CLK_TCK"))
        self.page_size = os.sysconf("SC_PAGE_SIZE")
        self._users: dict[int, str] = {}
        self.partial_errors = 0

    def boot_time(self) -> float:
        for line in (self.procfs / "stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
        raise ValueError("no btime in /proc/stat")

    def pids(self) -> list[int]:
        return [int(name) for name in os.listdir(self.procfs) if name.isdigit()]

    def stat(self, pid: int) -> Stat:
        return parse_stat(self.read(pid, "stat"), self.ticks, self.page_size)

    def read(self, pid: int, name: str) -> str:
        with open(self.procfs / str(pid) / name, "rb") as handle:
            return handle.read().decode(errors="replace")

    def username(self, uid: int) -> str:
        if uid not in self._users:
            try:
                self._users[uid] = pwd.getpwuid(uid).pw_name
            except KeyError:
                self._users[uid] = str(uid)
        return self._users[uid]

    def identity(self, pid: int, stat: Stat, status: dict[str, str],
                 boot_time: float) -> ProcessIdentity:
        cmdline = tuple(self.read(pid, "cmdline").split("\0"))
        while cmdline and not cmdline[-1]:
            cmdline = cmdline[:-1]
        return ProcessIdentity(pid=pid, comm=stat.comm, cmdline=cmdline,
                               username=self.username(effective_uid(status)),
                               start_time=boot_time + stat.start_ticks / self.ticks)

    def details(self, pid: int, stat: Stat, status: dict[str, str], start_time: float,
                smaps: bool, threads: bool) -> Sample:
        """Everything a grouped process reports; unreadable parts count as partial errors."""
        counters = {"cpu_user": stat.cpu_user, "cpu_system": stat.cpu_system,
                    "major_faults": stat.major_faults, "minor_faults": stat.minor_faults,
                    "read_bytes": 0.0, "write_bytes": 0.0, "ctx_voluntary": 0.0,
                    "ctx_nonvoluntary": 0.0}
        sample = Sample(start_time, stat, counters)
        if threads and stat.threads > 1:
            sample.threads = self.threads(pid)
        # As process-exporter: a multi-threaded process's context switches are its threads'
        # sum; its wait channels (and states, in _add) are its own and each thread's.
        if sample.threads:
            for key in ("ctx_voluntary", "ctx_nonvoluntary"):
                counters[key] = sum(t.counters[key] for t in sample.threads)
        else:
            counters["ctx_voluntary"] = float(status.get("voluntary_ctxt_switches", 0))
            counters["ctx_nonvoluntary"] = float(status.get("nonvoluntary_ctxt_switches", 0))
        for wchan in [self._wchan(f"{pid}/wchan"), *(t.wchan for t in sample.threads)]:
            if wchan:
                sample.wchans[wchan] = sample.wchans.get(wchan, 0) + 1
        sample.swapped = float(status.get("VmSwap", "0 kB").split()[0]) * 1024
        try:
            counters["read_bytes"], counters["write_bytes"] = parse_io(self.read(pid, "io"))
        except (OSError, KeyError, ValueError):
            self.partial_errors += 1
        try:
            sample.open_fds = len(os.listdir(self.procfs / str(pid) / "fd"))
            sample.fd_limit = parse_open_files_limit(self.read(pid, "limits"))
        except OSError:
            self.partial_errors += 1
        if smaps:  # kernel threads and kernels before 4.14 have none
            with contextlib.suppress(OSError, ValueError):
                sample.proportional, sample.proportional_swap = parse_smaps_rollup(
                    self.read(pid, "smaps_rollup"))
        return sample

    def _wchan(self, relative: str) -> str:
        """The kernel function a task sleeps in; "" while it runs ("0") or when unreadable."""
        try:
            with open(self.procfs / relative, "rb") as handle:
                name = handle.read().decode(errors="replace").strip()
        except OSError:
            return ""
        return "" if name == "0" else name

    def threads(self, pid: int) -> list[ThreadSample]:
        """Each thread's name, counters and wait channel, from /proc/PID/task/TID."""
        try:
            tids = os.listdir(self.procfs / str(pid) / "task")
        except OSError:
            self.partial_errors += 1
            return []
        out = []
        for tid in tids:
            base = f"{pid}/task/{tid}"
            try:
                stat = parse_stat(self.read(pid, f"task/{tid}/stat"), self.ticks,
                                  self.page_size)
                status = parse_status(self.read(pid, f"task/{tid}/status"))
            except (OSError, ValueError, IndexError):
                continue  # the thread ended meanwhile
            counters = {"cpu_user": stat.cpu_user, "cpu_system": stat.cpu_system,
                        "major_faults": stat.major_faults, "minor_faults": stat.minor_faults,
                        "ctx_voluntary": float(status.get("voluntary_ctxt_switches", 0)),
                        "ctx_nonvoluntary": float(status.get("nonvoluntary_ctxt_switches", 0)),
                        "read_bytes": 0.0, "write_bytes": 0.0}
            with contextlib.suppress(OSError, KeyError, ValueError):
                counters["read_bytes"], counters["write_bytes"] = parse_io(
                    self.read(pid, f"task/{tid}/io"))
            out.append(ThreadSample(int(tid), stat.comm, counters, self._wchan(f"{base}/wchan"),
                                    stat.state))
        return out


@dataclass(slots=True)
class Tracked:
    group: str | None  # None: seen, belongs to no group
    ppid: int
    start_time: float
    last: dict[str, float] = field(default_factory=dict)
    thread_last: dict[int, dict[str, float]] = field(default_factory=dict)


class ProcessGroupsCollector:
    def __init__(self, procfs: Path, sysfs: Path, matchers: Sequence[Matcher],
                 children: bool = True, smaps: bool = True, top_n: int = 10,
                 services: bool = True, threads: bool = True) -> None:
        self._reader = ProcReader(procfs)
        self._threads = threads
        self._matchers = tuple(matchers)
        self._children = children
        self._smaps = smaps
        self._top_n = top_n
        self._services = ServiceAccounting(sysfs) if services else None
        self._tracked: dict[tuple[int, int], Tracked] = {}  # (pid, start ticks) -> state
        self._accum: dict[str, dict[str, float]] = {}  # group -> counters never decreasing
        # group -> thread name -> counters, kept while that thread name is seen
        self._thread_accum: dict[str, dict[str, dict[str, float]]] = {}
        self._cpu_before: dict[tuple[int, int], float] = {}
        self._procread_errors = 0

    def collect(self) -> list[Metric]:
        reader = self._reader
        boot_time = reader.boot_time()
        # Only stat is read for every process; status and the rest only for new processes
        # (to name them) and grouped ones.
        seen: dict[tuple[int, int], Stat] = {}
        for pid in reader.pids():
            try:
                stat = reader.stat(pid)
            except (FileNotFoundError, ProcessLookupError):
                continue  # exited between the listing and the read: not an error
            except (OSError, ValueError, IndexError):
                self._procread_errors += 1
                continue
            seen[(pid, stat.start_ticks)] = stat
        groups = self._groups(seen, boot_time)
        families = self._group_families(groups) if self._matchers else []
        families += self._top_families(seen)
        if self._services is not None:
            families += self._services.collect()
        return families

    def _assign(self, key: tuple[int, int], stat: Stat, boot_time: float) -> Tracked:
        status = parse_status(self._reader.read(key[0], "status"))
        identity = self._reader.identity(key[0], stat, status, boot_time)
        return Tracked(group_of(self._matchers, identity), stat.ppid, identity.start_time)

    def _groups(self, seen: dict[tuple[int, int], Stat], boot_time: float) -> dict[str, Group]:
        tracked = self._tracked
        new = []
        for key, stat in seen.items():
            if key not in tracked:
                try:
                    tracked[key] = self._assign(key, stat, boot_time)
                except (OSError, ValueError, IndexError):
                    continue
                new.append(key)
        for key in list(tracked):
            if key not in seen:
                del tracked[key]
        if self._children:
            self._adopt(new, seen)
        groups: dict[str, Group] = {}
        for key, state in tracked.items():
            if state.group is None:
                continue
            pid, stat = key[0], seen[key]
            try:
                status = parse_status(self._reader.read(pid, "status"))
                sample = self._reader.details(pid, stat, status, state.start_time, self._smaps,
                                              self._threads)
            except OSError:
                continue
            group = groups.setdefault(state.group, Group())
            self._add(group, sample, state, first=key in new)
        for name, counters in self._accum.items():
            group = groups.setdefault(name, Group())
            for counter, value in counters.items():
                group.counters[counter] += value
        self._accum = {name: dict(group.counters) for name, group in groups.items()}
        # Thread names keep their counts only while some thread of that name is seen, as in
        # process-exporter.
        for name, group in groups.items():
            history = self._thread_accum.get(name, {})
            for thread_name, thread_group in group.threads.items():
                for counter, value in history.get(thread_name, {}).items():
                    thread_group.counters[counter] += value
        self._thread_accum = {name: {t: dict(g.counters) for t, g in group.threads.items()}
                              for name, group in groups.items() if group.threads}
        return groups

    def _adopt(self, new: list[tuple[int, int]], seen: dict[tuple[int, int], Stat]) -> None:
        """A new process no entry matches joins the group of its nearest grouped ancestor
        (process-exporter's -children)."""
        by_pid = {key[0]: key for key in seen}
        for key in new:
            state = self._tracked.get(key)
            if state is None or state.group is not None:
                continue
            ppid, hops = state.ppid, 0
            while ppid > 1 and hops < 64:
                parent = self._tracked.get(by_pid.get(ppid, (0, 0)))
                if parent is None:
                    break
                if parent.group is not None:
                    state.group = parent.group
                    break
                ppid, hops = parent.ppid, hops + 1

    @staticmethod
    def _add(group: Group, sample: Sample, state: Tracked, first: bool) -> None:
        stat = sample.stat
        group.procs += 1
        group.num_threads += stat.threads
        group.resident += stat.resident
        group.virtual += stat.virtual
        group.swapped += sample.swapped
        group.proportional += sample.proportional
        group.proportional_swap += sample.proportional_swap
        if sample.open_fds >= 0:
            group.open_fds += sample.open_fds
            if sample.fd_limit:
                group.worst_fd_ratio = max(group.worst_fd_ratio, sample.open_fds / sample.fd_limit)
        for state_letter in [stat.state, *(thread.state for thread in sample.threads)]:
            group.states[STATES.get(state_letter, "Other")] += 1
        start = sample.start_time
        group.oldest_start = start if group.oldest_start is None else min(group.oldest_start,
                                                                           start)
        for wchan, count in sample.wchans.items():
            group.wchans[wchan] = group.wchans.get(wchan, 0) + count
        # Only what was used since the process was first seen counts, as in process-exporter.
        for counter, value in sample.counters.items():
            if not first:
                group.counters[counter] += max(0.0, value - state.last.get(counter, value))
        state.last = dict(sample.counters)
        # The same for each thread, from when that thread was first seen.
        seen_threads = {}
        for thread in sample.threads:
            thread_group = group.threads.setdefault(thread.name, ThreadGroup())
            thread_group.count += 1
            before = state.thread_last.get(thread.tid)
            if before is not None:
                for counter, value in thread.counters.items():
                    thread_group.counters[counter] += max(0.0, value - before[counter])
            seen_threads[thread.tid] = thread.counters
        state.thread_last = seen_threads

    def _group_families(self, groups: dict[str, Group]) -> list[Metric]:
        p = "namedprocess_namegroup_"
        label = ["groupname"]
        ctx = CounterMetricFamily(p + "context_switches_total", "Context switches",
                                  labels=["ctxswitchtype", "groupname"])
        cpu = CounterMetricFamily(p + "cpu_seconds_total", "Cpu user usage in seconds",
                                  labels=["groupname", "mode"])
        major = CounterMetricFamily(p + "major_page_faults_total", "Major page faults",
                                    labels=label)
        memory = GaugeMetricFamily(p + "memory_bytes", "number of bytes of memory in use",
                                   labels=["groupname", "memtype"])
        minor = CounterMetricFamily(p + "minor_page_faults_total", "Minor page faults",
                                    labels=label)
        procs = GaugeMetricFamily(p + "num_procs", "number of processes in this group",
                                  labels=label)
        threads = GaugeMetricFamily(p + "num_threads", "Number of threads", labels=label)
        oldest = GaugeMetricFamily(
            p + "oldest_start_time_seconds",
            "start time in seconds since 1970/01/01 of oldest process in group", labels=label)
        fds = GaugeMetricFamily(p + "open_filedesc",
                                "number of open file descriptors for this group", labels=label)
        read = CounterMetricFamily(p + "read_bytes_total", "number of bytes read by this group",
                                   labels=label)
        states = GaugeMetricFamily(
            p + "states",
            "Number of processes in states Running, Sleeping, Waiting, Zombie, or Other",
            labels=["groupname", "state"])
        worst = GaugeMetricFamily(
            p + "worst_fd_ratio",
            "the worst (closest to 1) ratio between open fds and max fds among all procs in "
            "this group", labels=label)
        write = CounterMetricFamily(p + "write_bytes_total",
                                    "number of bytes written by this group", labels=label)
        for name in sorted(groups):
            g, c = groups[name], groups[name].counters
            ctx.add_metric(["nonvoluntary", name], c["ctx_nonvoluntary"])
            ctx.add_metric(["voluntary", name], c["ctx_voluntary"])
            cpu.add_metric([name, "system"], c["cpu_system"])
            cpu.add_metric([name, "user"], c["cpu_user"])
            major.add_metric([name], c["major_faults"])
            for memtype, value in (("proportionalResident", g.proportional),
                                   ("proportionalSwapped", g.proportional_swap),
                                   ("resident", g.resident), ("swapped", g.swapped),
                                   ("virtual", g.virtual)):
                memory.add_metric([name, memtype], value)
            minor.add_metric([name], c["minor_faults"])
            procs.add_metric([name], g.procs)
            threads.add_metric([name], g.num_threads)
            oldest.add_metric([name], GO_ZERO_TIME if g.oldest_start is None
                              else float(int(g.oldest_start)))
            fds.add_metric([name], g.open_fds)
            read.add_metric([name], c["read_bytes"])
            for state in STATE_NAMES:
                states.add_metric([name, state], g.states[state])
            worst.add_metric([name], g.worst_fd_ratio)
            write.add_metric([name], c["write_bytes"])
        errors = [
            bare_counter("namedprocess_scrape_errors",
                         "general scrape errors: no proc metrics collected during a cycle", 0),
            bare_counter("namedprocess_scrape_partial_errors",
                         "incremented each time a tracked proc's metrics collection fails "
                         "partially, e.g. unreadable I/O stats", self._reader.partial_errors),
            bare_counter("namedprocess_scrape_procread_errors",
                         "incremented each time a proc's metrics collection fails",
                         self._procread_errors)]
        return [ctx, cpu, major, memory, minor, procs, threads, oldest, fds, read, states, worst,
                write, *self._thread_families(groups), *errors]

    @staticmethod
    def _thread_families(groups: dict[str, Group]) -> list[Metric]:
        """Per group and thread name (process-exporter's -threads), and wait channels."""
        p = "namedprocess_namegroup_"
        named = ["groupname", "threadname"]
        wchans = GaugeMetricFamily(p + "threads_wchan",
                                   "Number of threads in this group waiting on each wchan",
                                   labels=["groupname", "wchan"])
        count = GaugeMetricFamily(p + "thread_count",
                                  "Number of threads in this group with same threadname",
                                  labels=named)
        cpu = CounterMetricFamily(p + "thread_cpu_seconds_total",
                                  "Cpu user/system usage in seconds",
                                  labels=["groupname", "threadname", "mode"])
        io = CounterMetricFamily(p + "thread_io_bytes_total",
                                 "number of bytes read/written by these threads",
                                 labels=["groupname", "threadname", "iomode"])
        major = CounterMetricFamily(p + "thread_major_page_faults_total",
                                    "Major page faults for these threads", labels=named)
        minor = CounterMetricFamily(p + "thread_minor_page_faults_total",
                                    "Minor page faults for these threads", labels=named)
        ctx = CounterMetricFamily(p + "thread_context_switches_total",
                                  "Context switches for these threads",
                                  labels=["groupname", "threadname", "ctxswitchtype"])
        for name, group in groups.items():
            for wchan, number in group.wchans.items():
                wchans.add_metric([name, wchan], number)
            for thread_name, thread in group.threads.items():
                c = thread.counters
                count.add_metric([name, thread_name], thread.count)
                cpu.add_metric([name, thread_name, "user"], c["cpu_user"])
                cpu.add_metric([name, thread_name, "system"], c["cpu_system"])
                io.add_metric([name, thread_name, "read"], c["read_bytes"])
                io.add_metric([name, thread_name, "write"], c["write_bytes"])
                major.add_metric([name, thread_name], c["major_faults"])
                minor.add_metric([name, thread_name], c["minor_faults"])
                ctx.add_metric([name, thread_name, "voluntary"], c["ctx_voluntary"])
                ctx.add_metric([name, thread_name, "nonvoluntary"], c["ctx_nonvoluntary"])
        return [wchans, count, cpu, io, major, minor, ctx]

    def _top_families(self, seen: dict[tuple[int, int], Stat]) -> list[Metric]:
        """The top_n processes by CPU used since the last cycle and by resident memory."""
        cpu_now = {key: stat.cpu_user + stat.cpu_system for key, stat in seen.items()}
        used = {key: cpu_now[key] - self._cpu_before[key]
                for key in cpu_now if key in self._cpu_before}
        self._cpu_before = cpu_now
        if self._top_n <= 0:
            return []
        labels = ["pid", "comm", "user"]
        cpu = GaugeMetricFamily(
            "hostagent_top_process_cpu_seconds",
            "CPU seconds used since the previous run, by the processes that used the most.",
            labels=labels)
        memory = GaugeMetricFamily(
            "hostagent_top_process_resident_memory_bytes",
            "Resident memory of the processes that hold the most.", labels=labels)
        for family, ranking in (
                (cpu, heapq.nlargest(self._top_n, used.items(), key=lambda kv: kv[1])),
                (memory, heapq.nlargest(self._top_n, ((k, seen[k].resident) for k in seen),
                                        key=lambda kv: kv[1]))):
            for key, value in ranking:
                family.add_metric([str(key[0]), seen[key].comm, self._user_of(key[0])], value)
        return [cpu, memory]


    def _user_of(self, pid: int) -> str:
        try:
            status = parse_status(self._reader.read(pid, "status"))
        except OSError:
            return ""
        return self._reader.username(effective_uid(status))


def effective_uid(status: dict[str, str]) -> int:
    uids = status.get("Uid", "0").split()
    return int(uids[1] if len(uids) > 1 else uids[0])


def _matchers(settings: Any) -> Iterator[Matcher]:
    if settings.config_file is not None:
        yield from load_config_file(settings.config_file)
    if settings.process_names:
        yield from parse_process_names(settings.process_names,
                                       "collectors.process_groups.process_names")


def create(context: Context, settings: Any) -> ProcessGroupsCollector:
    return ProcessGroupsCollector(context.procfs, context.sysfs, list(_matchers(settings)),
                                  children=settings.children, smaps=settings.smaps,
                                  top_n=settings.top_n, services=settings.services,
                                  threads=settings.threads)
