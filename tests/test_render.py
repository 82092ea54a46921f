"""Exposition: negotiation, gzip, parse-back with prometheus_client, and the real promtool."""

from __future__ import annotations

import gzip
import subprocess
import urllib.request

import pytest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

from agent.agent import build_jobs
from agent.collectors.catalog import NetstatSettings
from agent.config import Config
from agent.exposition.formats import OPENMETRICS, TEXT
from agent.exposition.negotiate import accepts_gzip, choose_format
from agent.exposition.registry import Registry, Snapshot, TargetSnapshot
from agent.exposition.render import Cache, RuntimeFamilies, render
from agent.pool import DaemonThreadPool
from agent.scheduler import Scheduler
from tests.conftest import require_tool

BOTH = (TEXT, OPENMETRICS)
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


@pytest.mark.parametrize(("accept", "expected"), [
    (None, TEXT),
    ("", TEXT),
    (PROMETHEUS_ACCEPT, OPENMETRICS),
    ("text/plain;version=0.0.4;q=0.5,*/*;q=0.1", TEXT),
    ("application/openmetrics-text; version=1.0.0", OPENMETRICS),
    ("application/openmetrics-text;version=1.0.0;q=0.2,text/plain;q=0.9", TEXT),
    ("application/openmetrics-text;version=9.9.9", TEXT),
    ("application/json", TEXT),
    ("application/openmetrics-text;q=bogus", TEXT),
])
def test_choose_format(accept: str | None, expected: str) -> None:
    assert choose_format(accept) == expected


@pytest.mark.parametrize(("header", "expected"), [
    (None, False), ("gzip", True), ("gzip, deflate, br", True), ("deflate", False),
    ("gzip;q=0", False), ("*", True), ("identity", False), ("GZIP;q=0.5", True),
])
def test_accepts_gzip(header: str | None, expected: bool) -> None:
    assert accepts_gzip(header) is expected


def sample_snapshots() -> dict[str, Snapshot]:
    counter = CounterMetricFamily("demo_events", "Events seen.", labels=["kind"])
    counter.add_metric(["a"], 3)
    gauge = GaugeMetricFamily("demo_temperature_celsius", 'Help with "quotes" and \\.',
                              labels=["room"])
    gauge.add_metric(['kitchen "north"'], 21.5)
    return {"b": Snapshot.of("b", [gauge]), "a": Snapshot.of("a", [counter])}


def test_render_parses_back_in_both_formats() -> None:
    expo = render(7, sample_snapshots(), [], RuntimeFamilies(), BOTH)
    assert expo.generation == 7
    text = {f.name: f for f in parse_text(expo.bodies[TEXT].plain.decode())}
    om = {f.name: f for f in parse_om(expo.bodies[OPENMETRICS].plain.decode())}
    for families in (text, om):
        assert families["demo_events"].type == "counter"
        assert families["demo_events"].samples[0].value == 3
        assert families["demo_temperature_celsius"].samples[0].labels == {"room": 'kitchen "north"'}
        assert "hostagent_build_info" in families and "process_cpu_seconds" in families
    assert expo.bodies[OPENMETRICS].plain.endswith(b"# EOF\n")
    assert expo.bodies[OPENMETRICS].plain.count(b"# EOF") == 1
    # Snapshots appear in a stable order (by name), whatever the publish order.
    text = expo.bodies[TEXT].plain
    assert text.index(b"demo_events") < text.index(b"demo_temperature")


def test_gzip_bodies_match_plain() -> None:
    expo = render(1, sample_snapshots(), [], RuntimeFamilies(), BOTH)
    for body in expo.bodies.values():
        assert gzip.decompress(body.gzipped) == body.plain
        assert len(body.gzipped) < len(body.plain)
    assert expo.bodies[TEXT].content_type == "text/plain; version=0.0.4; charset=utf-8"
    assert expo.bodies[OPENMETRICS].content_type.startswith(
        "application/openmetrics-text; version=1.0.0")


def test_registry_replaces_atomically() -> None:
    registry = Registry()
    first = registry.snapshots
    registry.publish(Snapshot.of("x", []))
    assert "x" not in first and "x" in registry.snapshots
    generation = registry.generation
    registry.remove("x")
    assert "x" not in registry.snapshots and registry.generation == generation + 1


def promtool_problems(exposition: bytes) -> set[str]:
    result = subprocess.run([require_tool("promtool"), "check", "metrics"], input=exposition,
                            capture_output=True, timeout=60)
    return {line.strip() for line in (result.stdout + result.stderr).decode().splitlines()
            if line.strip()}


async def full_exposition() -> bytes:
    config = Config()
    registry = Registry()
    pool = DaemonThreadPool(4)
    scheduler = Scheduler(build_jobs(config), registry, pool, jitter=0)
    await scheduler.run_all_once()
    pool.shutdown(wait=False)
    assert all(s.success for s in scheduler.statuses()), scheduler.statuses()
    return render(1, registry.snapshots, scheduler.statuses(), RuntimeFamilies(),
                  [TEXT]).bodies[TEXT].plain


async def test_promtool_finds_nothing_node_exporter_does_not_also_have(node_exporter) -> None:
    ours = promtool_problems(await full_exposition())
    # Default collectors (the whole set an operator runs today), with the latest release's
    # netstat fields, which Debian's older node_exporter lacks.
    url = node_exporter(f"--collector.netstat.fields={NetstatSettings().fields}")
    theirs = promtool_problems(urllib.request.urlopen(url, timeout=10).read())
    assert ours - theirs == set()
    assert not any(p.startswith("hostagent_") for p in ours)


def test_clashing_family_is_dropped_from_the_textfile_and_counted() -> None:
    # The textfile yields even when type and help agree: a user file never adds series to a
    # built-in family.
    builtin = GaugeMetricFamily("node_load1", "1m load average.", value=0.5)
    mine = GaugeMetricFamily("node_load1", "1m load average.", value=99)
    extra = GaugeMetricFamily("my_batch_last_run_seconds", "Batch.", value=1)
    snapshots = {"textfile": Snapshot.of("textfile", [mine, extra]),
                 "load": Snapshot.of("load", [builtin])}
    expo = render(1, snapshots, [], RuntimeFamilies(), BOTH)
    families = {f.name: f for f in parse_text(expo.bodies[TEXT].plain.decode())}
    assert families["node_load1"].samples[0].value == 0.5
    assert expo.bodies[TEXT].plain.count(b"# TYPE node_load1 ") == 1
    assert "my_batch_last_run_seconds" in families
    dropped = families["hostagent_collector_dropped_families"].samples
    assert [(s.labels, s.value) for s in dropped] == [({"collector": "textfile"}, 1.0)]


def targets(*values: tuple[str, float]) -> dict[str, TargetSnapshot]:
    out = {}
    for target, value in values:
        remote = GaugeMetricFamily("node_load1", "1m load average.", value=value)
        remote_cpu = CounterMetricFamily("node_cpu_seconds", "Seconds.", labels=["cpu", "mode"])
        remote_cpu.add_metric(["0", "idle"], value)
        up = GaugeMetricFamily("hostagent_ssh_up", "Up.", value=1)
        out[target] = TargetSnapshot(target, (("target", target),),
                                     {"login": (up,), "node": (remote, remote_cpu)})
    return out


def test_remote_hosts_series_stay_off_metrics_unless_asked_for() -> None:
    local = GaugeMetricFamily("node_load1", "1m load average.", value=0.5)
    remote = targets(("db1", 1.5), ("db2", 2.5))
    expo = render(1, {"load": Snapshot.of("load", [local])}, [], RuntimeFamilies(), BOTH,
                  remote, frozenset({"login", "checks"}))
    families = {f.name: f for f in parse_text(expo.bodies[TEXT].plain.decode())}
    assert [(s.labels, s.value) for s in families["node_load1"].samples] == [({}, 0.5)]
    assert "node_cpu_seconds" not in families
    assert [s.labels for s in families["hostagent_ssh_up"].samples] == [
        {"target": "db1"}, {"target": "db2"}]


def test_same_family_from_several_snapshots_is_merged_not_dropped() -> None:
    local = GaugeMetricFamily("node_load1", "1m load average.", value=0.5)
    cpu = CounterMetricFamily("node_cpu_seconds", "Seconds.", labels=["cpu", "mode"])
    cpu.add_metric(["0", "idle"], 10)
    snapshots = {"load": Snapshot.of("load", [local]), "cpu": Snapshot.of("cpu", [cpu])}
    expo = render(1, snapshots, [], RuntimeFamilies(), BOTH, targets(("db1", 1.5), ("db2", 2.5)),
                  frozenset({"login", "node"}))
    for fmt, parse in ((TEXT, parse_text), (OPENMETRICS, parse_om)):
        plain = expo.bodies[fmt].plain
        families = {f.name: f for f in parse(plain.decode())}
        assert plain.count(b"# TYPE node_load1 gauge") == 1
        assert {(tuple(s.labels.items()), s.value) for s in families["node_load1"].samples} == {
            ((), 0.5), ((("target", "db1"),), 1.5), ((("target", "db2"),), 2.5)}
        cpu_samples = [s for s in families["node_cpu_seconds"].samples
                       if s.name == "node_cpu_seconds_total"]
        assert len(cpu_samples) == 3 and families["node_cpu_seconds"].type == "counter"
        assert len(families["hostagent_ssh_up"].samples) == 2
        dropped = families.get("hostagent_collector_dropped_families")
        assert dropped is None or dropped.samples == [], "none dropped"


def test_merged_exposition_passes_promtool() -> None:
    snapshots = {"load": Snapshot.of("load", [GaugeMetricFamily("node_load1", "1m load average.",
                                                                  value=2)])}
    expo = render(1, snapshots, [], RuntimeFamilies(), [TEXT], targets(("a", 1), ("b", 1)),
                  frozenset({"node"}))
    assert promtool_problems(expo.bodies[TEXT].plain) == set()


def test_same_name_with_another_type_or_help_is_dropped_and_counted() -> None:
    gauge = GaugeMetricFamily("thing_count", "Things.", value=1)
    counter = CounterMetricFamily("thing_count", "Things.", value=2)
    other_help = GaugeMetricFamily("thing_count", "Other things.", value=3)
    snapshots = {"a": Snapshot.of("a", [gauge]), "b": Snapshot.of("b", [counter]),
                 "c": Snapshot.of("c", [other_help])}
    expo = render(1, snapshots, [], RuntimeFamilies(), [TEXT])
    families = {f.name: f for f in parse_text(expo.bodies[TEXT].plain.decode())}
    assert [s.value for s in families["thing_count"].samples] == [1.0]
    dropped = families["hostagent_collector_dropped_families"].samples
    assert sorted((s.labels["collector"], s.value) for s in dropped) == [("b", 1.0), ("c", 1.0)]


def test_runtime_families_equal_prometheus_clients_collectors(tmp_path) -> None:
    """The process_*, python_gc_* and python_info families are prometheus_client's own (same
    names, help, types, values and order), read from one stat and one limits read."""
    import gc

    from prometheus_client.gc_collector import GCCollector
    from prometheus_client.platform_collector import PlatformCollector
    from prometheus_client.process_collector import ProcessCollector
    from prometheus_client.registry import CollectorRegistry

    (tmp_path / "stat").write_text("cpu  1 2 3 4\nbtime 1700000000\nprocesses 5\n")
    own = tmp_path / "self"
    (own / "fd").mkdir(parents=True)
    for fd in range(7):
        (own / "fd" / str(fd)).write_text("")
    (own / "stat").write_text(
        "4242 (python3 (agent)) S 1 4242 4242 0 -1 4194560 16000 0 0 0 123 45 0 0 20 0 6 0 "
        "98765 812345344 14000 18446744073709551615 1 1 0 0 0 0 0 16781312 17642 0 0 0 17 1 "
        "0 0 0 0 0\n")
    (own / "limits").write_text(
        "Limit                     Soft Limit           Hard Limit           Units\n"
        "Max open files            1024                 524288               files\n"
        "Max address space         unlimited            unlimited            bytes\n")
    families = RuntimeFamilies(proc=str(tmp_path))
    gc.disable()
    try:
        ours = list(families.collect())
        reference = [*ProcessCollector(proc=str(tmp_path), registry=None).collect(),
                     *GCCollector(registry=CollectorRegistry()).collect(),
                     *PlatformCollector(registry=None).collect()]
        again = list(families.collect())
    finally:
        gc.enable()
    assert ours[0].name == "hostagent_build_info"
    assert ours[-1] == GaugeMetricFamily(
        "process_virtual_memory_max_bytes",
        "Maximum amount of virtual memory available in bytes.", value=2.0**64 - 1)
    assert ours[1:-1] == reference
    # No collection since: the GC and platform families are the very same objects.
    assert [a is b for a, b in zip(ours, again, strict=True)] == [
        True, *[False] * 6, True, True, True, True, False]
    gc.collect()
    assert list(families.collect())[7] is not ours[7]


def test_changed_values_of_the_same_series_are_written_without_encoding_again(
        monkeypatch) -> None:
    """Most families that change between ticks keep their series and change values: their
    OpenMetrics lines are the previous ones with the values written anew, byte for byte what
    a full encoding gives; new series, a new header or labels fall back to it."""
    import random

    import agent.exposition.encoding as encoding_module
    from agent.exposition.encoding import FamilyEncoder
    from agent.exposition.formats import encode

    encoded: list[str] = []
    real = encoding_module.encode

    def counting(families, fmt):  # type: ignore[no-untyped-def]
        families = list(families)
        encoded.extend(f"{f.name}:{fmt}" for f in families)
        return real(families, fmt)

    monkeypatch.setattr(encoding_module, "encode", counting)
    rng = random.Random(7)
    values = [0.0, 1.0, -1.0, 1e21, 2.5e-7, float("inf"), float("nan"), 123456789.0, 0.1]

    def tick(devices: list[str], documentation: str = "Bytes read.") -> list:  # type: ignore[type-arg]
        read = CounterMetricFamily("disk_read_bytes", documentation, labels=["device", "mode"])
        for device in devices:
            read.add_metric([device, 'a "b"\\c\n'], rng.choice(values) + rng.random())
        temp = GaugeMetricFamily("temperature_celsius", "Temperature.", unit="celsius",
                                 labels=["chip"])
        temp.add_metric(["cpu 0"], rng.choice(values))
        return [read, temp, GaugeMetricFamily("up", "Up.", value=rng.choice(values))]

    encoder = FamilyEncoder()
    for devices, documentation, full in (
            (["sda", "sdb"], "Bytes read.", 3),
            (["sda", "sdb"], "Bytes read.", 0),
            (["sda", "sdb"], "Bytes read.", 0),
            (["sda", "sdc"], "Bytes read.", 1),  # another series: encoded again
            (["sda", "sdc"], "Read.", 1),  # another header
            (["sda", "sdc"], "Read.", 0)):
        encoded.clear()
        families = tick(devices, documentation)
        got = encoder.encode(families, [OPENMETRICS, TEXT])
        assert len([c for c in encoded if c.endswith(OPENMETRICS)]) == full, encoded
        for family in families:
            for fmt in (OPENMETRICS, TEXT):
                assert got[family.name][fmt].whole == encode([family], fmt)
                whole, samples = got[family.name][fmt]
                header = whole[:len(whole) - len(samples)]
                assert whole.endswith(samples) and all(
                    line.startswith(b"# ") for line in header.splitlines())


def test_collector_families_unchanged_since_the_last_render_are_the_same_objects() -> None:
    """The agent's per-collector families are built every render; those whose samples did
    not change (intervals, timeouts, states) are handed out again, so the encoder skips them
    at once. Each equals a fresh build."""
    from agent.exposition.selfmetrics import CollectorFamilies, collector_families
    from agent.exposition.status import CollectorStatus

    def statuses(duration: float, success: bool | None = True) -> list[CollectorStatus]:
        return [CollectorStatus("cpu", 15, 10, 3, success, duration, 100.0, None, 0, 1),
                CollectorStatus("runtime", 15, 10, 3, True, 0.5, 100.0, None, 2, 0),
                CollectorStatus("new", 15, 10, 0, None, None, None, None, 0, 0)]

    aliased = {"cpu", "new"}
    built = CollectorFamilies()
    first = built(statuses(0.1), {}, aliased)
    assert first == collector_families(statuses(0.1), {}, aliased)
    second = built(statuses(0.2), {"textfile": 1}, aliased)
    assert second == collector_families(statuses(0.2), {"textfile": 1}, aliased)
    changed = {"hostagent_collector_duration_seconds", "node_scrape_collector_duration_seconds",
               "hostagent_collector_dropped_families"}
    assert {f.name for f, g in zip(first, second, strict=True) if f is not g} == changed
    third = built(statuses(0.2, success=False), {"textfile": 1}, aliased)
    assert third == collector_families(statuses(0.2, False), {"textfile": 1}, aliased)
    assert {f.name for f, g in zip(second, third, strict=True) if f is not g} == {
        "hostagent_collector_success", "node_scrape_collector_success"}


def test_family_encoder_reencodes_only_changed_families(monkeypatch) -> None:
    import agent.exposition.encoding as registry_module
    from agent.exposition.encoding import Encoded, FamilyEncoder

    calls: list[str] = []
    real = registry_module.encode

    def counting(families, fmt):  # type: ignore[no-untyped-def]
        families = list(families)
        calls.extend(f.name for f in families)
        return real(families, fmt)

    monkeypatch.setattr(registry_module, "encode", counting)

    def families(load: float) -> list:  # type: ignore[type-arg]
        return [GaugeMetricFamily("const_total_bytes", "Constant.", value=42),
                GaugeMetricFamily("load_now", "Changes.", value=load)]

    encoder = FamilyEncoder()

    def joined(per_family: dict[str, dict[str, Encoded]], fmt: str) -> bytes:
        return b"".join(bodies[fmt].whole for bodies in per_family.values())

    first = joined(encoder.encode(families(1.0), [TEXT]), TEXT)
    assert sorted(calls) == ["const_total_bytes", "load_now"]
    calls.clear()
    published = encoder.encode(families(2.0), [TEXT])
    second = joined(published, TEXT)
    assert calls == ["load_now"], "the unchanged family is reused"
    assert second == first.replace(b"load_now 1", b"load_now 2")
    calls.clear()
    both = joined(encoder.encode(families(2.0), [TEXT, OPENMETRICS]), TEXT)
    assert sorted(calls) == ["const_total_bytes", "load_now"], "a new format is encoded once"
    assert both == second
    assert all(set(bodies) == {TEXT} for bodies in published.values()), \
        "bytes already handed to a snapshot are never changed"
    # The very same families again: nothing encoded, and a format not asked for before
    # still is.
    same = families(3.0)
    encoder.encode(same, [TEXT])
    calls.clear()
    assert encoder.encode(same, [TEXT]) == encoder.encode(list(same), [TEXT])
    assert calls == []
    assert set(encoder.encode(same, [TEXT, OPENMETRICS])["load_now"]) == {TEXT, OPENMETRICS}


async def test_a_failed_render_keeps_the_last_exposition_and_the_task(monkeypatch) -> None:
    import asyncio

    import agent.exposition.render as render_module
    from agent.exposition.formats import Demand
    from agent.exposition.render import Renderer

    registry = Registry()
    pool = DaemonThreadPool(1)
    renderer = Renderer(registry, list, pool, Demand([TEXT]))
    task = asyncio.create_task(renderer.run())
    good = renderer.current

    def broken(*args: object) -> None:
        raise ValueError("cannot encode")

    monkeypatch.setattr(render_module, "render", broken)
    registry.touch()
    for _ in range(100):
        await asyncio.sleep(0.01)
        if renderer.failing:
            break
    assert renderer.failing and not task.done() and renderer.current is good
    monkeypatch.undo()
    registry.touch()
    for _ in range(100):
        await asyncio.sleep(0.01)
        if not renderer.failing:
            break
    assert not renderer.failing and renderer.current.generation == registry.generation
    task.cancel()
    pool.shutdown(wait=False)


def test_a_textfile_gauge_named_like_a_counters_samples_is_dropped() -> None:
    forks = CounterMetricFamily("node_forks", "Total number of forks.", value=7)
    mine = GaugeMetricFamily("node_forks_total", "Mine.", value=1)
    snapshots = {"system": Snapshot.of("system", [forks]),
                 "textfile": Snapshot.of("textfile", [mine])}
    expo = render(1, snapshots, [], RuntimeFamilies(), BOTH)
    for body in expo.bodies.values():
        assert body.plain.count(b"# TYPE node_forks") == 1
    families = {f.name: f for f in parse_text(expo.bodies[TEXT].plain.decode())}
    assert families["node_forks"].samples[0].value == 7
    assert not any("second TYPE" in p for p in promtool_problems(expo.bodies[TEXT].plain))


@pytest.mark.parametrize("name", ["process_open_fds", "hostagent_build_info"])
def test_a_textfile_family_named_like_the_agents_own_loses(name: str) -> None:
    mine = GaugeMetricFamily(name, "Mine.", value=12345)
    error = GaugeMetricFamily("node_textfile_scrape_error", "1 if there was an error opening or "
                              "reading a file, 0 otherwise", value=0)
    snapshots = {"textfile": Snapshot.of("textfile", [mine, error])}
    expo = render(1, snapshots, [], RuntimeFamilies(), BOTH)
    for fmt, parse in ((TEXT, parse_text), (OPENMETRICS, parse_om)):
        plain = expo.bodies[fmt].plain
        assert plain.count(f"# TYPE {name} ".encode()) == 1
        families = {f.name: f for f in parse(plain.decode())}
        assert all(s.value != 12345 for s in families[name].samples), "the agent's own wins"
        assert families["node_textfile_scrape_error"].samples[0].value == 1
        dropped = families["hostagent_collector_dropped_families"].samples
        assert [(s.labels, s.value) for s in dropped] == [({"collector": "textfile"}, 1.0)]
    assert promtool_problems(expo.bodies[TEXT].plain) == set()


def test_a_long_render_is_followed_by_a_pause_in_proportion_capped() -> None:
    from agent.exposition.render import MAX_PACE_SECONDS, RENDER_PACE, pace

    assert pace(0.0) == 0.0
    assert pace(0.05) == 0.05 * RENDER_PACE
    assert pace(60.0) == MAX_PACE_SECONDS


async def test_the_renderer_paces_itself_by_how_long_its_last_render_took(monkeypatch) -> None:
    import asyncio
    import time

    import agent.exposition.render as render_module
    from agent.exposition.formats import Demand
    from agent.exposition.render import Renderer

    registry = Registry()
    pool = DaemonThreadPool(1)
    renderer = Renderer(registry, list, pool, Demand([TEXT]))
    real_render = render_module.render

    def slow(*args: object, **kwargs: object) -> object:
        time.sleep(0.05)  # a render of many targets' series
        return real_render(*args, **kwargs)  # type: ignore[arg-type]

    durations: list[float] = []

    def recorded(took: float) -> float:
        durations.append(took)
        return 0.0

    monkeypatch.setattr(render_module, "render", slow)
    monkeypatch.setattr(render_module, "pace", recorded)
    task = asyncio.create_task(renderer.run())
    registry.touch()
    for _ in range(300):
        await asyncio.sleep(0.01)
        if durations:
            break
    assert durations and durations[0] >= 0.05, "the pause follows the render's duration"
    assert renderer.current.generation == registry.generation
    task.cancel()
    pool.shutdown(wait=False)


async def test_a_change_with_nothing_else_running_is_rendered_without_the_coalescing_wait(
        monkeypatch) -> None:
    import asyncio

    import agent.exposition.render as render_module
    from agent.exposition.formats import Demand
    from agent.exposition.render import Renderer

    monkeypatch.setattr(render_module, "COALESCE_SECONDS", 60.0)  # a wait would show
    registry = Registry()
    pool = DaemonThreadPool(1)
    settled = [True]
    renderer = Renderer(registry, list, pool, Demand([TEXT]), settled=lambda: settled[0])
    task = asyncio.create_task(renderer.run())
    try:
        registry.publish(Snapshot.of("load", [GaugeMetricFamily("node_load1", "Load.", 1)]))
        for _ in range(500):
            if renderer.current.generation == registry.generation:
                break
            await asyncio.sleep(0.01)
        assert renderer.current.generation == registry.generation
        assert b"node_load1 1" in renderer.current.bodies[TEXT].plain
        settled[0] = False  # a collector still running: its snapshot is waited for
        registry.touch()
        await asyncio.sleep(0.3)
        assert renderer.current.generation < registry.generation
    finally:
        task.cancel()
        pool.shutdown(wait=False)


def test_renders_with_a_kept_cache_equal_fresh_ones_as_values_and_names_change() -> None:
    # The clash check is worked out again only when names change; in between it is replayed
    # on new family objects: the textfile's clash stays dropped and flagged, merges stay.
    cache = Cache()

    def snapshots(load: float, extra: str) -> dict[str, Snapshot]:
        textfile = [GaugeMetricFamily("node_load1", "1m load average.", value=99),
                    GaugeMetricFamily("node_textfile_scrape_error", "Error.", value=0),
                    GaugeMetricFamily(extra, "Batch.", value=load)]
        return {"textfile": Snapshot.of("textfile", textfile),
                "load": Snapshot.of("load", [GaugeMetricFamily("node_load1",
                                                               "1m load average.", value=load)])}

    for generation, (load, extra) in enumerate([(0.5, "a"), (0.7, "a"), (0.7, "b"), (1.5, "b")]):
        args = (snapshots(load, extra), [], RuntimeFamilies(), BOTH,
                targets(("db1", load)), frozenset({"node"}))
        kept = render(generation, *args, cache=cache)
        fresh = render(generation, *args)
        for fmt in BOTH:
            mine, theirs = kept.bodies[fmt].plain, fresh.bodies[fmt].plain
            # process_* series move between the two renders: compare the rest
            assert mine.split(b"# HELP process_")[0] == theirs.split(b"# HELP process_")[0]
            assert gzip.decompress(kept.bodies[fmt].gzipped) == mine
        families = {f.name: f for f in parse_text(kept.bodies[TEXT].plain.decode())}
        assert families["node_textfile_scrape_error"].samples[0].value == 1
        assert {s.value for s in families["node_load1"].samples} == {load}
        assert extra in families


def test_an_unchanged_body_keeps_its_gzip_and_a_changed_one_is_compressed_again() -> None:
    cache = Cache()
    runtime = RuntimeFamilies(False)  # no process_* series, which move between renders
    first = render(1, sample_snapshots(), [], runtime, BOTH, cache=cache)
    again = render(2, sample_snapshots(), [], runtime, BOTH, cache=cache)
    changed = sample_snapshots()
    changed["a"] = Snapshot.of("a", [CounterMetricFamily("demo_events", "Events seen.", 4)])
    later = render(3, changed, [], runtime, BOTH, cache=cache)
    for fmt in BOTH:
        assert again.bodies[fmt].plain == first.bodies[fmt].plain
        assert again.bodies[fmt].gzipped is first.bodies[fmt].gzipped
        assert later.bodies[fmt].plain != first.bodies[fmt].plain
        assert gzip.decompress(later.bodies[fmt].gzipped) == later.bodies[fmt].plain


def test_open_fds_are_counted_by_procfs_where_it_reports_them() -> None:
    """Since Linux 6.2, /proc/self/fd's size is the number of open descriptors: read in one
    stat, without the descriptor a listing itself opens."""
    import os

    if os.stat("/proc/self/fd").st_size == 0:
        pytest.skip("this kernel does not report the count (before 6.2)")
    extra = [os.open("/proc/self/stat", os.O_RDONLY) for _ in range(40)]
    try:
        for _ in range(5):  # another thread may open or close one meanwhile: ask again
            reported = next(f for f in RuntimeFamilies().collect()
                            if f.name == "process_open_fds").samples[0].value
            if reported == len(os.listdir("/proc/self/fd")) - 1:
                break
        else:
            listed = len(os.listdir("/proc/self/fd"))
            raise AssertionError(f"process_open_fds {reported}, {listed} entries listed")
    finally:
        for fd in extra:
            os.close(fd)
