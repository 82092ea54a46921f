"""process_groups: process-exporter's grouping and series, per-service cgroup accounting and
the top consumers; on a generated /proc tree, on live child processes and against the real
process-exporter."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from agent.collectors.process_groups import ProcessGroupsCollector, parse_stat
from agent.collectors.process_matching import (
    GroupingError,
    ProcessIdentity,
    group_of,
    parse_process_names,
)
from agent.config import ConfigError, build
from tests.golden import assert_golden

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def write_proc(root: Path, pid: int, comm: str, cmdline: list[str], *, ppid: int = 1,
               state: str = "S", utime: int = 0, stime: int = 0, threads: int = 1,
               rss_pages: int = 100, uid: int = 0, start: int = 1000, fds: int = 3,
               io: tuple[int, int] | None = (4096, 8192), faults: tuple[int, int] = (10, 1),
               ctx: tuple[int, int] = (5, 2), status: bool = True) -> None:
    d = root / str(pid)
    (d / "fd").mkdir(parents=True)
    fields = [state, str(ppid), "1", "1", "0", "-1", "4194560", str(faults[0]), "0",
              str(faults[1]), "0", str(utime), str(stime), "0", "0", "20", "0", str(threads),
              "0", str(start), str(rss_pages * PAGE * 4), str(rss_pages)] + ["0"] * 30
    (d / "stat").write_text(f"{pid} ({comm}) " + " ".join(fields) + "\n")
    if status:
        (d / "status").write_text(
            f"Name:\t{comm}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nVmSwap:\t      8 kB\n"
            f"voluntary_ctxt_switches:\t{ctx[0]}\nnonvoluntary_ctxt_switches:\t{ctx[1]}\n")
    (d / "cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in cmdline))
    if io is not None:
        (d / "io").write_text(f"rchar: 1\nwchar: 1\nread_bytes: {io[0]}\n"
                              f"write_bytes: {io[1]}\n")
    (d / "limits").write_text("Limit                     Soft Limit           Hard Limit\n"
                              "Max open files            1024                 4096      files\n")
    for fd in range(fds):
        (d / "fd" / str(fd)).touch()
    (d / "smaps_rollup").write_text("Rss:  400 kB\nPss:  200 kB\nSwapPss:  4 kB\n")
    (d / "wchan").write_text("0" if state == "R" else "do_epoll_wait")
    if threads > 1:
        for tid in range(threads):
            task = d / "task" / str(pid + tid)
            task.mkdir(parents=True)
            name = comm if tid == 0 else f"{comm}-bg"
            thread_fields = [*fields[:11], str(utime // threads), str(stime // threads),
                             *fields[13:]]
            (task / "stat").write_text(f"{pid + tid} ({name}) " + " ".join(thread_fields))
            (task / "status").write_text("voluntary_ctxt_switches:\t3\n"
                                         "nonvoluntary_ctxt_switches:\t1\n")
            (task / "io").write_text(f"read_bytes: {tid * 100}\nwrite_bytes: 0\n")
            (task / "wchan").write_text("0" if tid == 0 and state == "R" else "futex_wait")


def fixture_proc(root: Path, cycle: int) -> Path:
    """A few dozen processes: web servers with workers (children), a multi-threaded
    database, zombies, a kernel thread, an empty cmdline, one that exits mid-read. In
    cycle 1 the processes have used more, and one web worker has exited."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "stat").write_text("cpu 1 2 3 4\nbtime 1700000000\n")
    grow = 100 * cycle
    write_proc(root, 1, "systemd", ["/sbin/init"], ppid=0, start=1)
    write_proc(root, 2, "kthreadd", [], ppid=0, start=1, io=None, fds=0)
    write_proc(root, 100, "nginx", ["nginx: master process /usr/sbin/nginx"], utime=50 + grow,
               start=500)
    for i in range(8):
        if cycle and i == 7:
            continue  # exited
        write_proc(root, 101 + i, "nginx", ["nginx: worker process"], ppid=100,
                   utime=10 + grow, stime=5 + grow, io=(1000 + grow, 2000 + grow), start=600)
    # Unmatched helper forked by the master: joins the nginx group (children).
    write_proc(root, 120, "logrotate", ["/usr/sbin/logrotate", "x"], ppid=100, start=700)
    write_proc(root, 200, "postgres", ["/usr/lib/postgresql/15/bin/postgres", "-D", "/var"],
               threads=4, uid=0, utime=300 + grow, start=300, state="R")
    for i in range(6):
        write_proc(root, 210 + i, "postgres", [f"postgres: 15/main: worker {i}"], ppid=200,
                   start=400 + i, state="D" if i == 0 else "S")
    for i in range(3):
        write_proc(root, 300 + i, "defunct", [], ppid=1, state="Z", start=900, io=None, fds=0)
    write_proc(root, 400, "kworker/0:1", [], ppid=2, state="I", start=2, io=None, fds=0)
    write_proc(root, 500, "cron", ["/usr/sbin/cron", "-f"], start=50)
    write_proc(root, 501, "vanishing", ["/bin/true"], status=False)  # exits mid-read
    for i in range(12):
        write_proc(root, 600 + i, "sleep", ["sleep", "1000"], ppid=500, start=800 + i)
    return root


CONFIG = [
    {"name": "web", "comm": ["nginx"]},
    {"name": "db-{{.Username}}", "exe": ["/usr/lib/postgresql/15/bin/postgres"]},
    {"name": "pg-{{.Matches.role}}", "cmdline": [r"^postgres: \S+ (?P<role>\w+)"]},
    {"name": "{{.Comm}}", "comm": ["defunct", "kworker/0:1"]},
]


def collect_twice(tmp_path: Path, **kwargs: object) -> tuple[list[Metric], list[Metric]]:
    proc = fixture_proc(tmp_path / "proc", 0)
    collector = ProcessGroupsCollector(proc, tmp_path / "sys", parse_process_names(CONFIG),
                                       services=False, **kwargs)  # type: ignore[arg-type]
    first = collector.collect()
    shutil.rmtree(proc)
    fixture_proc(proc, 1)
    return first, collector.collect()


def series(families: list[Metric]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in families for s in f.samples}


def test_golden_and_process_exporter_counter_semantics(tmp_path: Path) -> None:
    first, second = collect_twice(tmp_path, top_n=3)
    one, two = series(first), series(second)
    procs = "namedprocess_namegroup_num_procs"
    assert one[(procs, (("groupname", "web"),))] == 10  # master, 8 workers, adopted child
    assert two[(procs, (("groupname", "web"),))] == 9
    assert one[(procs, (("groupname", "db-root"),))] == 1
    assert one[(procs, (("groupname", "pg-worker"),))] == 6  # regex capture names the group
    assert one[(procs, (("groupname", "defunct"),))] == 3
    assert ("namedprocess_namegroup_num_procs", (("groupname", "sleep"),)) not in one
    cpu = ("namedprocess_namegroup_cpu_seconds_total", (("groupname", "web"), ("mode", "user")))
    # Counted from first sight: zero, then what the 8 survivors used (the exited one's
    # earlier use is kept, its last cycle is not seen).
    assert one[cpu] == 0
    assert two[cpu] == pytest.approx((100 + 7 * 100) / TICKS)
    # A multi-threaded process's context switches are summed over its threads.
    ctx = ("namedprocess_namegroup_context_switches_total",
           (("ctxswitchtype", "voluntary"), ("groupname", "db-root")))
    assert one[ctx] == 0
    states = series(first)
    assert states[("namedprocess_namegroup_states",
                   (("groupname", "pg-worker"), ("state", "Waiting")))] == 1
    assert states[("namedprocess_namegroup_states",
                   (("groupname", "defunct"), ("state", "Zombie")))] == 3
    assert states[("namedprocess_namegroup_states",
                   (("groupname", "kworker/0:1"), ("state", "Other")))] == 1
    assert_golden(second, "process_groups")


def test_counters_never_decrease_when_members_exit(tmp_path: Path) -> None:
    proc = fixture_proc(tmp_path / "proc", 0)
    collector = ProcessGroupsCollector(proc, tmp_path, parse_process_names(CONFIG),
                                       services=False)
    collector.collect()
    shutil.rmtree(proc)
    fixture_proc(proc, 1)
    used = series(collector.collect())
    shutil.rmtree(proc)
    fixture_proc(proc, 1)
    for pid in range(100, 121):
        shutil.rmtree(proc / str(pid), ignore_errors=True)  # every nginx process is gone
    after = series(collector.collect())
    for key, value in used.items():
        if key[0].endswith("_total") and dict(key[1]).get("groupname") == "web":
            assert after[key] == value, key
    assert after[("namedprocess_namegroup_num_procs", (("groupname", "web"),))] == 0
    assert after[("namedprocess_namegroup_oldest_start_time_seconds",
                  (("groupname", "web"),))] == -62135596800.0


def test_top_consumers_are_capped_at_two_n(tmp_path: Path) -> None:
    first, second = collect_twice(tmp_path, top_n=3)
    top = [s for f in second for s in f.samples if s.name.startswith("hostagent_top_")]
    assert len(top) == 6
    cpu = sorted((s.value, s.labels["pid"]) for s in top
                 if s.name == "hostagent_top_process_cpu_seconds")
    # Each surviving web worker used 200 ticks, more than anything else.
    assert len(cpu) == 3 and {pid for _, pid in cpu} <= {str(p) for p in range(101, 108)}
    assert all(v == pytest.approx(200 / TICKS) for v, _ in cpu)
    assert {s.labels["user"] for s in top} == {"root"}
    assert not [s for f in first for s in f.samples
                if s.name == "hostagent_top_process_cpu_seconds"]  # no interval yet


def test_parse_stat_handles_parentheses_and_spaces_in_comm() -> None:
    fields = " ".join(["S", "7"] + ["0"] * 50)
    stat = parse_stat(f"42 (a (b) c) {fields}", 100, 4096)
    assert stat.comm == "a (b) c" and stat.ppid == 7 and stat.state == "S"


def identity(comm: str, cmdline: list[str]) -> ProcessIdentity:
    return ProcessIdentity(pid=7, comm=comm, cmdline=tuple(cmdline), username="www",
                           start_time=1.5)


def test_matchers_as_process_exporter() -> None:
    matchers = parse_process_names([
        {"name": "{{.ExeBase}}:{{.Username}}", "exe": ["/usr/bin/python3", "node"]},
        {"comm": ["bash"], "cmdline": ["--login"]},  # both must match
        {"name": "{{ .Comm }}-{{.PID}}", "cmdline": ["."]},
    ])
    assert group_of(matchers, identity("python3", ["/usr/bin/python3", "x"])) == "python3:www"
    assert group_of(matchers, identity("x", ["/opt/node", "y"])) == "node:www"  # basename
    assert group_of(matchers, identity("x", ["/usr/local/bin/python3"])) == "x-7"
    assert group_of(matchers, identity("bash", ["bash", "--login"])) == "bash"  # default name
    assert group_of(matchers, identity("bash", ["bash"])) == "bash-7"
    assert group_of(matchers, identity("kthreadd", [])) is None  # cmdline "" matches nothing


@pytest.mark.parametrize(("entries", "message"), [
    ([{"name": "x"}], "process_names[0]: needs at least one of comm, exe, cmdline"),
    ([{"comm": "bash"}], "process_names[0].comm: must be a non-empty list of strings"),
    ([{"cmdline": ["("]}], "process_names[0].cmdline: invalid regular expression"),
    ([{"comm": ["a"], "name": "{{.Nope}}"}], "unsupported template field {{.Nope}}"),
    ([{"comm": ["a"], "name": "{{if .Comm}}x{{end}}"}], "only {{.Field}} substitutions"),
    ([{"comm": ["a"], "extra": 1}], "process_names[0].extra: unknown field"),
])
def test_bad_entries_are_one_line_naming_the_entry(entries: list[object], message: str) -> None:
    with pytest.raises(GroupingError, match=None) as info:
        parse_process_names(entries)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_config_rejects_a_bad_process_exporter_file(tmp_path: Path) -> None:
    path = tmp_path / "pe.yml"
    path.write_text("process_names:\n  - cmdline: ['(']\n")
    with pytest.raises(ConfigError) as info:
        build({"collectors": {"process_groups": {"config_file": str(path)}}})
    (problem,) = info.value.problems
    assert problem.startswith("collectors.process_groups.config_file: ")
    assert "invalid regular expression" in problem


def write_cgroup_v2(root: Path) -> None:
    cg = root / "fs" / "cgroup"
    cg.mkdir(parents=True)
    (cg / "cgroup.controllers").write_text("cpu io memory pids\n")
    nginx = cg / "system.slice" / "nginx.service"
    getty = cg / "system.slice" / "system-getty.slice" / "getty@tty1.service"
    for path in (nginx, getty):
        path.mkdir(parents=True)
        (path / "cpu.stat").write_text("usage_usec 3000000\nuser_usec 2000000\n"
                                       "system_usec 1000000\n")
        (path / "memory.current").write_text("1048576\n")
        (path / "memory.events").write_text("low 0\nhigh 0\nmax 0\noom 1\noom_kill 2\n")
        (path / "pids.current").write_text("5\n")
    (nginx / "io.stat").write_text("8:0 rbytes=4096 wbytes=8192 rios=1 wios=2\n")
    (nginx / "memory.pressure").write_text("some avg10=0.00 avg60=0.00 avg300=0.00 total=1500000\n"
                                           "full avg10=0.00 avg60=0.00 avg300=0.00 total=500000\n")


def test_services_from_cgroup_v2(tmp_path: Path) -> None:
    write_cgroup_v2(tmp_path)
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "stat").write_text("btime 1700000000\n")
    collector = ProcessGroupsCollector(tmp_path / "proc", tmp_path, [], top_n=0)
    got = series(collector.collect())
    nginx = (("service", "nginx.service"),)
    assert got[("hostagent_service_cpu_seconds_total", (("mode", "user"), *nginx))] == 2.0
    assert got[("hostagent_service_memory_bytes", nginx)] == 1048576
    assert got[("hostagent_service_oom_kills_total", nginx)] == 2
    assert got[("hostagent_service_tasks", (("service", "getty@tty1.service"),))] == 5
    assert got[("hostagent_service_io_bytes_total",
                (("device", "8:0"), ("direction", "write"), *nginx))] == 8192
    assert got[("hostagent_service_pressure_seconds_total",
                (("kind", "full"), ("resource", "memory"), *nginx))] == 0.5


def test_services_from_cgroup_v1(tmp_path: Path) -> None:
    cg = tmp_path / "fs" / "cgroup"
    for controller, files in (("cpuacct", {"cpuacct.stat": f"user {TICKS}\nsystem 0\n"}),
                              ("memory", {"memory.usage_in_bytes": "4096\n",
                                          "memory.oom_control": "oom_kill_disable 0\n"
                                                                "under_oom 0\noom_kill 3\n"}),
                              ("pids", {"pids.current": "2\n"})):
        path = cg / controller / "system.slice" / "ssh.service"
        path.mkdir(parents=True)
        for name, text in files.items():
            (path / name).write_text(text)
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "stat").write_text("btime 1700000000\n")
    got = series(ProcessGroupsCollector(tmp_path / "proc", tmp_path, [], top_n=0).collect())
    ssh = (("service", "ssh.service"),)
    assert got[("hostagent_service_cpu_seconds_total", (("mode", "user"), *ssh))] == 1.0
    assert got[("hostagent_service_memory_bytes", ssh)] == 4096
    assert got[("hostagent_service_oom_kills_total", ssh)] == 3
    assert got[("hostagent_service_tasks", ssh)] == 2


MARK = f"hostagent-pg-{os.getpid()}"
BURN = ("import sys, time\nend = time.monotonic() + 600\n"
        "while time.monotonic() < end: pass\n")
HOLD = "import time\nblock = bytearray(96 * 1024 * 1024)\ntime.sleep(600)\n"
THREADS = ("import threading, time\nfor _ in range(3):\n"
           "    threading.Thread(target=time.sleep, args=(600,), daemon=True).start()\n"
           "time.sleep(600)\n")


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = [subprocess.Popen([sys.executable, "-c", BURN, f"{MARK}-burner"]),
             subprocess.Popen([sys.executable, "-c", HOLD, f"{MARK}-holder"]),
             subprocess.Popen([sys.executable, "-c", HOLD.replace("96", "1"), f"{MARK}-holder"]),
             subprocess.Popen([sys.executable, "-c", THREADS, f"{MARK}-threads"])]
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait()


def live_config() -> list[dict[str, object]]:
    return [{"name": "live-{{.Matches.kind}}", "cmdline": [MARK + r"-(?P<kind>\w+)$"]}]


def wait_for(condition: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_live_children_land_in_their_group_and_the_top_n(
        children: list[subprocess.Popen[bytes]]) -> None:
    collector = ProcessGroupsCollector(Path("/proc"), Path("/sys"),
                                       parse_process_names(live_config()), top_n=5,
                                       services=False)
    burner, holder, *_ = children
    state: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}

    def settled() -> bool:
        state["now"] = series(collector.collect())
        rss = state["now"].get(("namedprocess_namegroup_memory_bytes",
                                (("groupname", "live-holder"), ("memtype", "resident"))), 0)
        cpu = state["now"].get(("namedprocess_namegroup_cpu_seconds_total",
                                (("groupname", "live-burner"), ("mode", "user"))), 0)
        return rss > 96 * 1024 * 1024 and cpu > 0.2

    wait_for(settled)
    got = state["now"]
    assert got[("namedprocess_namegroup_num_procs", (("groupname", "live-holder"),))] == 2
    assert got[("namedprocess_namegroup_num_procs", (("groupname", "live-burner"),))] == 1
    top_cpu = {dict(k[1])["pid"] for k in got if k[0] == "hostagent_top_process_cpu_seconds"}
    top_mem = {dict(k[1])["pid"] for k in got
               if k[0] == "hostagent_top_process_resident_memory_bytes"}
    assert str(burner.pid) in top_cpu
    assert len(top_cpu) <= 5 and len(top_mem) <= 5
    assert str(holder.pid) in top_mem or all(
        v > 96 * 1024 * 1024 for k, v in got.items()
        if k[0] == "hostagent_top_process_resident_memory_bytes")


@contextlib.contextmanager
def process_exporter(config: Path) -> Iterator[str]:
    binary = shutil.which("prometheus-process-exporter")
    if binary is None:
        pytest.fail("prometheus-process-exporter is not installed (make test installs it)")
    from tests.conftest import free_port

    port = free_port()
    proc = subprocess.Popen([binary, "-config.path", str(config),
                             "-web.listen-address", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_for(lambda: _reachable(url))
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _reachable(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1).read()
        return True
    except OSError:
        return False


def scrape_groups(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples
            if s.name.startswith("namedprocess_namegroup_")}


DRIFT = {"namedprocess_namegroup_memory_bytes": 0.05}


def test_against_the_real_process_exporter(children: list[subprocess.Popen[bytes]],
                                           tmp_path: Path) -> None:
    import yaml

    config = tmp_path / "process-exporter.yml"
    config.write_text(yaml.safe_dump({"process_names": live_config()}))
    collector = ProcessGroupsCollector(Path("/proc"), Path("/sys"),
                                       parse_process_names(live_config()), top_n=0,
                                       services=False)
    with process_exporter(config) as url:
        def settled() -> bool:  # every child seen, the threaded one with its 4 threads
            groups = scrape_groups(url)
            threads = sum(v for k, v in groups.items()
                          if k[0] == "namedprocess_namegroup_thread_count"
                          and dict(k[1])["groupname"] == "live-threads")
            return threads == 4 and ("namedprocess_namegroup_num_procs",
                                     (("groupname", "live-holder"),)) in groups

        wait_for(settled)
        before = scrape_groups(url)
        ours = {k: v for k, v in series(collector.collect()).items()
                if k[0].startswith("namedprocess_namegroup_")}
        after = scrape_groups(url)
        assert set(ours) == set(before)
        assert any(k[0] == "namedprocess_namegroup_thread_count" for k in ours)
        for key, value in ours.items():
            if key[0].endswith("_total"):
                continue  # both count from their own first sight
            lo, hi = sorted((before[key], after[key]))
            slack = DRIFT.get(key[0], 0.0)
            assert lo * (1 - slack) - 1 <= value <= hi * (1 + slack) + 1, (key, before[key],
                                                                           value, after[key])
