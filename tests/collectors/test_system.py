from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric

from agent.collectors.system import (
    SystemCollector,
    SystemReadings,
    os_version,
    parse_file_nr,
    parse_os_release,
    parse_pressure,
    parse_stat,
    support_end_timestamp,
    system_families,
)
from tests.golden import FIXTURES, assert_golden

SYSTEM = FIXTURES / "system"
UNAME = {"domainname": "(none)", "machine": "x86_64", "nodename": "db-7",
         "release": "6.8.0-31-generic", "sysname": "Linux",
         "version": "#31-Ubuntu SMP PREEMPT_DYNAMIC Sat Apr 20 00:40:06 UTC 2024"}


def collector(root: Path = SYSTEM) -> SystemCollector:
    return SystemCollector(root / "proc", root / "sys", root / "root")


def fixed(readings: SystemReadings) -> SystemReadings:
    """The live parts (clock, zone, uname) pinned, for a stable exposition."""
    return dataclasses.replace(readings, now=1718023456.25, zone=("CEST", 7200), uname=UNAME)


def values(families: list[Metric]) -> dict[str, float]:
    """sample name -> value, for families with a single sample."""
    return {f.samples[0].name: f.samples[0].value for f in families if len(f.samples) == 1}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A writable copy of the fixture tree, to take parts away from."""
    shutil.copytree(SYSTEM, tmp_path, dirs_exist_ok=True)
    return tmp_path


def test_parse_stat() -> None:
    assert parse_stat((SYSTEM / "proc/stat").read_text()) == {
        "intr": 183741029, "ctxt": 412094127, "btime": 1718023400, "processes": 2390151,
        "procs_running": 3, "procs_blocked": 1}


def test_parse_file_nr() -> None:
    # Modern kernels report LONG_MAX as the maximum; a float, as in node_exporter.
    assert parse_file_nr("10432\t0\t9223372036854775807\n") == (10432, 2.0**63)


def test_parse_pressure_in_seconds() -> None:
    assert parse_pressure((SYSTEM / "proc/pressure/io").read_text()) == {
        "some": 31.54752, "full": 24.210007}
    # Older kernels have no "full" line for cpu.
    assert parse_pressure("some avg10=0.00 avg60=0.00 avg300=0.00 total=5\n") == {"some": 5e-6}


def test_parse_os_release_unquotes_like_a_shell() -> None:
    release = parse_os_release((SYSTEM / "root/usr/lib/os-release").read_text())
    assert release["NAME"] == "Fedora Linux"
    assert release["VERSION_ID"] == "40"
    assert release["VERSION_CODENAME"] == ""
    assert release["IMAGE_ID"] == "fedora-server"
    assert release["BUILD_ID"] == '2024"04'
    assert not any(key.startswith("#") for key in release)


@pytest.mark.parametrize(("version_id", "expected"), [
    ("22.04", 22.04), ("40", 40.0), ("9.3.1", 9.3), ("12.", 12.0), ("rolling", 0.0), ("", 0.0)])
def test_os_version_is_major_minor(version_id: str, expected: float) -> None:
    assert os_version(version_id) == expected


def test_golden() -> None:
    families = system_families(fixed(collector().read()))
    got = values(families)
    assert got["node_boot_time_seconds"] == 1718023400
    assert got["node_context_switches_total"] == 412094127
    assert got["node_forks_total"] == 2390151
    assert got["node_intr_total"] == 183741029
    assert (got["node_procs_running"], got["node_procs_blocked"]) == (3, 1)
    assert got["node_filefd_allocated"] == 10432
    assert got["node_pressure_cpu_waiting_seconds_total"] == pytest.approx(81.276341)
    assert got["node_pressure_memory_stalled_seconds_total"] == pytest.approx(0.810442)
    # node_exporter reads no "full" line for cpu.
    assert "node_pressure_cpu_stalled_seconds_total" not in got
    # irq (Linux 6.1+) has only a "full" line.
    assert got["node_pressure_irq_stalled_seconds_total"] == pytest.approx(0.008494)
    assert_golden(families, "system")


def test_clocksources_and_os_labels() -> None:
    families = {f.name: f for f in system_families(fixed(collector().read()))}
    available = families["node_time_clocksource_available_info"].samples
    assert [(s.labels["device"], s.labels["clocksource"]) for s in available] == [
        ("0", "tsc"), ("0", "hpet"), ("0", "acpi_pm")]
    assert families["node_time_clocksource_current_info"].samples[0].labels == {
        "clocksource": "tsc", "device": "0"}
    # /etc/os-release wins over /usr/lib/os-release.
    info = families["node_os_info"].samples[0].labels
    assert (info["id"], info["id_like"], info["version_id"]) == ("ubuntu", "debian", "22.04")
    assert info["variant"] == ""
    version = families["node_os_version"].samples[0]
    assert (version.labels, version.value) == (
        {"id": "ubuntu", "id_like": "debian", "name": "Ubuntu"}, 22.04)


def test_live_readings_come_from_the_host() -> None:
    readings = collector().read()
    assert readings.uname["domainname"] == "(none)"  # from the fixture procfs
    assert readings.uname["sysname"]
    assert readings.now > 1.7e9
    assert isinstance(readings.zone[0], str)


def test_pressure_absent_means_no_pressure_metrics(tree: Path) -> None:
    shutil.rmtree(tree / "proc/pressure")
    names = {f.name for f in collector(tree).collect()}
    assert not any(name.startswith("node_pressure_") for name in names)
    assert "node_context_switches" in names


def test_pressure_per_resource(tree: Path) -> None:
    (tree / "proc/pressure/memory").unlink()
    (tree / "proc/pressure/irq").unlink()  # kernels before 6.1
    names = {f.name for f in collector(tree).collect()}
    assert {n for n in names if n.startswith("node_pressure_")} == {
        "node_pressure_cpu_waiting_seconds", "node_pressure_io_waiting_seconds",
        "node_pressure_io_stalled_seconds"}


def test_optional_sources_missing_leave_only_their_metrics_out(tree: Path) -> None:
    for part in ("sys", "root", "proc/sys", "proc/pressure"):
        shutil.rmtree(tree / part)
    families = {f.name: f for f in collector(tree).collect()}
    assert set(families) == {
        "node_boot_time_seconds", "node_context_switches", "node_forks", "node_intr",
        "node_procs_blocked", "node_procs_running", "node_time_seconds",
        "node_time_zone_offset_seconds", "node_uname_info"}
    # Without procfs/sys/kernel/domainname, the kernel's placeholder.
    assert families["node_uname_info"].samples[0].labels["domainname"] == "(none)"


def test_os_release_falls_back_to_usr_lib(tree: Path) -> None:
    (tree / "root/etc/os-release").unlink()
    families = {f.name: f for f in collector(tree).collect()}
    info = families["node_os_info"].samples[0].labels
    assert (info["id"], info["variant_id"], info["version_codename"]) == (
        "fedora", "server", "")
    assert families["node_os_version"].samples[0].value == 40


def test_no_os_version_without_a_numeric_version_id(tree: Path) -> None:
    (tree / "root/etc/os-release").write_text('NAME="Arch Linux"\nID=arch\nBUILD_ID=rolling\n')
    names = {f.name for f in collector(tree).collect()}
    assert "node_os_info" in names
    assert "node_os_version" not in names


def test_missing_proc_stat_fails_the_run(tree: Path) -> None:
    (tree / "proc/stat").unlink()
    with pytest.raises(FileNotFoundError):
        collector(tree).collect()


def test_runs_on_this_host() -> None:
    names = {f.name for f in SystemCollector(Path("/proc"), Path("/sys"), Path("/")).collect()}
    assert {"node_boot_time_seconds", "node_time_seconds", "node_uname_info"} <= names


def test_softirq_per_vector_with_the_option() -> None:
    plain = SystemCollector(SYSTEM / "proc", SYSTEM / "sys", SYSTEM, frozenset({"stat"}))
    assert "node_softirqs" not in {f.name for f in plain.collect()}
    with_vectors = SystemCollector(SYSTEM / "proc", SYSTEM / "sys", SYSTEM, frozenset({"stat"}),
                                   softirq=True)
    [family] = [f for f in with_vectors.collect() if f.name == "node_softirqs"]
    got = {s.labels["vector"]: s.value for s in family.samples}
    assert list(got) == sorted(got)  # node_exporter's (sorted) order
    assert got == {"hi": 41, "timer": 30211042, "net_tx": 18, "net_rx": 2021093,
                   "block": 402141, "block_iopoll": 0, "tasklet": 10441, "sched": 33211094,
                   "hrtimer": 0, "rcu": 24565003}


@pytest.mark.parametrize("flags", [[], ["--collector.stat.softirq"]])
def test_stat_matches_node_exporter_on_the_fixture(node_exporter, flags: list[str]) -> None:  # type: ignore[no-untyped-def]
    from agent.config import Config
    from tests.test_differential import compare

    url = node_exporter("--collector.disable-defaults", "--collector.stat",
                        f"--path.procfs={SYSTEM / 'proc'}", *flags)
    config = Config.model_validate({"paths": {"procfs": str(SYSTEM / "proc")},
                                    "collectors": {"stat": {"softirq": bool(flags)}}})
    compare("stat", config, url)


def test_pressure_matches_node_exporter_on_the_fixture(node_exporter) -> None:  # type: ignore[no-untyped-def]
    from agent.config import Config
    from tests.test_differential import compare

    url = node_exporter("--collector.disable-defaults", "--collector.pressure",
                        f"--path.procfs={SYSTEM / 'proc'}")
    # node_pressure_irq_stalled_seconds_total is newer than the live peer (1.5).
    compare("pressure", Config.model_validate({"paths": {"procfs": str(SYSTEM / "proc")}}), url,
            ignore=("node_pressure_irq_",))


def test_os_support_end(tree: Path) -> None:
    (tree / "root/etc/os-release").unlink()  # /usr/lib/os-release has SUPPORT_END=2029-05-31
    families = {f.name: f for f in collector(tree).collect()}
    family = families["node_os_support_end_timestamp_seconds"]
    assert (family.type, family.documentation) == (
        "gauge", "Metric containing the end-of-life date timestamp of the OS.")
    assert family.samples[0].value == 1874880000  # 2029-05-31T00:00:00Z
    assert support_end_timestamp("1970-01-02") == 86400


@pytest.mark.parametrize("bad", ["2029-5-31", "2029-05-31T00:00", "soon", "2029-02-30"])
def test_os_support_end_not_a_date_fails_the_run(tree: Path, bad: str) -> None:
    (tree / "root/etc/os-release").write_text(f"ID=x\nSUPPORT_END={bad}\n")
    with pytest.raises(ValueError):
        collector(tree).collect()


def test_unchanged_readings_hand_out_the_same_families() -> None:
    """uname and os read the same tick after tick: their collectors hand out the very same
    families (the renderer skips them at once); the time part always reads a new clock."""
    for part in ("uname", "os"):
        parts = SystemCollector(SYSTEM / "proc", SYSTEM / "sys", SYSTEM / "root",
                                frozenset({part}))
        first = parts.collect()
        assert first and parts.collect() is first
    clock = SystemCollector(SYSTEM / "proc", SYSTEM / "sys", SYSTEM / "root",
                            frozenset({"time"}))
    first = clock.collect()
    time.sleep(0.01)
    assert clock.collect() is not first
