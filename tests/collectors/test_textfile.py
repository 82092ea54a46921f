from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om

from agent.collectors import textfile
from agent.collectors.textfile import (
    TextfileCollector,
    TextfileError,
    merge_files,
    parse_textfile,
    textfile_families,
)
from agent.exposition.formats import OPENMETRICS, TEXT, encode
from tests.golden import FIXTURES, assert_golden

TEXTFILE = FIXTURES / "textfile"
ALL_TYPES = (TEXTFILE / "types/all_types.prom").read_text()
MTIME = 1718023400.75


def series(families: list[Metric]) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value for f in families for s in f.samples}


def by_name(families: list[Metric]) -> dict[str, Metric]:
    return {f.name: f for f in families}


def copy_dir(name: str, tmp_path: Path) -> Path:
    """A copy of a fixture directory, every file with mtime MTIME."""
    target = tmp_path / name
    shutil.copytree(TEXTFILE / name, target)
    for path in target.rglob("*"):
        os.utime(path, (MTIME, MTIME))
    return target


def warnings(caplog: pytest.LogCaptureFixture) -> list[tuple[str, dict[str, object]]]:
    return [(r.getMessage(), r.kv) for r in caplog.records  # type: ignore[attr-defined]
            if r.name == "hostagent.textfile" and r.levelno == logging.WARNING]


def test_every_type_is_parsed() -> None:
    families = parse_textfile(ALL_TYPES)
    assert {f.name: f.type for f in families} == {
        "backup_runs": "counter",
        "backup_last_success_timestamp_seconds": "gauge",
        "apt_upgrades_pending": "unknown",
        "smartmon_device_active": "unknown",
        "backup_duration_seconds": "histogram",
        "backup_size_bytes": "summary",
        # Declared a counter without '_total': keeps its name, loses its type (see module).
        "ups_battery_events": "unknown",
    }
    got = series(families)
    assert got[("backup_runs_total", frozenset({("job", "db")}))] == 1377
    assert got[("backup_duration_seconds_bucket", frozenset({("le", "600")}))] == 401
    assert got[("backup_size_bytes", frozenset({("quantile", "0.99")}))] == 4.7e9
    assert got[("backup_size_bytes_sum", frozenset())] == 5.1e11
    assert got[("ups_battery_events", frozenset())] == 3


def test_golden() -> None:
    path = "/var/lib/node_exporter/textfile/all_types.prom"
    families = textfile_families(merge_files([(path, parse_textfile(ALL_TYPES))]),
                                 {path: 1718023400.0}, errored=False)
    assert_golden(families, "textfile")


def test_round_trip_through_both_exposition_formats() -> None:
    families = merge_files([("/t/all_types.prom", parse_textfile(ALL_TYPES))])
    text, openmetrics = encode(families, TEXT), encode(families, OPENMETRICS)
    # Every series of the file comes back under its own name, with its value and type.
    again = parse_textfile(text.decode())
    assert series(again) == series(families)
    assert {f.name: f.type for f in again} == {f.name: f.type for f in families}
    lines = [line.split("{")[0].split(" ")[0] for line in ALL_TYPES.splitlines()
             if line and not line.startswith("#")]
    assert {name for name, _ in series(again)} == set(lines)
    # The OpenMetrics rendering is valid and keeps the types.
    parsed = list(parse_om(openmetrics.decode() + "# EOF\n"))  # type: ignore[no-untyped-call]
    assert {f.name: f.type for f in parsed} == {f.name: f.type for f in families}
    assert series(parsed) == series(families)


def test_invalid_and_timestamped_files_are_skipped_and_valid_ones_exported(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    directory = copy_dir("mixed", tmp_path)
    families = by_name(TextfileCollector(directory).collect())
    assert families["node_textfile_scrape_error"].samples[0].value == 1
    assert series([families["raid_degraded"]]) == {
        ("raid_degraded", frozenset({("md", "md0")})): 0,
        ("raid_degraded", frozenset({("md", "md1")})): 1}
    # Only the file read OK has an mtime: the full path, whole seconds, as node_exporter.
    assert series([families["node_textfile_mtime_seconds"]]) == {
        ("node_textfile_mtime_seconds", frozenset({("file", f"{directory}/good.prom")})):
            1718023400}
    # Not recursive, *.prom only, nothing of the skipped files.
    assert set(families) == {"raid_degraded", "node_textfile_mtime_seconds",
                             "node_textfile_scrape_error", "hostagent_textfile_file_error"}
    assert series([families["hostagent_textfile_file_error"]]) == {
        ("hostagent_textfile_file_error", frozenset({("file", f"{directory}/{name}.prom")})): v
        for name, v in (("good", 0), ("broken", 1), ("timestamped", 1))}
    logged = {str(kv["file"]): str(kv["err"]) for _, kv in warnings(caplog)}
    assert set(logged) == {f"{directory}/broken.prom", f"{directory}/timestamped.prom"}
    assert "parsing error" in logged[f"{directory}/broken.prom"]
    assert "timestamps" in logged[f"{directory}/timestamped.prom"]


def test_timestamped_file_is_rejected_whole(tmp_path: Path) -> None:
    (tmp_path / "ts.prom").write_text('# TYPE a gauge\na 1\nb{x="y"} 2 1718023400000\n')
    with pytest.raises(TextfileError, match="timestamps"):
        parse_textfile((tmp_path / "ts.prom").read_text())
    families = by_name(TextfileCollector(tmp_path).collect())
    assert set(families) == {"node_textfile_scrape_error", "hostagent_textfile_file_error"}
    assert families["node_textfile_scrape_error"].samples[0].value == 1


def test_families_from_several_files_are_merged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    directory = copy_dir("merge", tmp_path)
    families = by_name(TextfileCollector(directory).collect())
    role = families["host_role"]
    assert role.documentation == f"Metric read from {directory}/a.prom, {directory}/b.prom"
    assert [s.labels["role"] for s in role.samples] == ["db", "backup"]
    # b.prom's host_team has another type and help: dropped, as node_exporter drops it.
    assert series([families["host_team"]]) == {
        ("host_team", frozenset({("team", "storage")})): 1}
    assert "declared_only" not in families  # no samples, no family
    assert families["node_textfile_scrape_error"].samples[0].value == 0
    assert len(families["node_textfile_mtime_seconds"].samples) == 2
    assert [message for message, _ in warnings(caplog)] == [
        "dropping repeated series", "dropping metric family that conflicts with an earlier file"]


def test_no_directory_exports_only_the_error_gauge() -> None:
    families = TextfileCollector(None).collect()
    assert [(f.name, f.samples[0].value) for f in families] == [("node_textfile_scrape_error", 0)]


def test_empty_and_missing_directories(tmp_path: Path) -> None:
    empty = TextfileCollector(tmp_path).collect()
    assert [(f.name, f.samples[0].value) for f in empty] == [("node_textfile_scrape_error", 0)]
    missing = TextfileCollector(tmp_path / "absent").collect()
    assert [(f.name, f.samples[0].value) for f in missing] == [("node_textfile_scrape_error", 1)]


def test_file_label_is_the_cleaned_joined_path(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.prom").write_text("a 1\n")
    families = by_name(TextfileCollector(tmp_path / "sub" / "..").collect())
    assert families["node_textfile_mtime_seconds"].samples[0].labels == {
        "file": f"{tmp_path}/a.prom"}
    assert families["a"].documentation == f"Metric read from {tmp_path}/a.prom"


def test_the_collectors_own_names_cannot_be_overridden(tmp_path: Path) -> None:
    (tmp_path / "a.prom").write_text("node_textfile_scrape_error 0\nok 1\n")
    families = TextfileCollector(tmp_path).collect()
    assert [f.name for f in families] == [
        "ok", "hostagent_textfile_file_error", "node_textfile_mtime_seconds",
        "node_textfile_scrape_error"]


@pytest.mark.parametrize(("text", "reason"), [
    ("# TYPE a gauge\n# TYPE a gauge\na 1\n", "second TYPE"),
    ("# HELP a one\n# HELP a two\na 1\n", "second HELP"),
    ("# TYPE a info\na 1\n", "unknown metric type"),
    ("# TYPE a\na 1\n", "unknown metric type"),
    ("a 1\n# TYPE a gauge\na 2\n", "after its samples"),
    ('a{b="c" 1\n', "parsing error"),
    ("a 1 \n", "whitespace"),
    ("a 1\r\nb 2\r\n", "carriage return"),
    ("a one\n", "parsing error"),
    ('{"node.load1"} 1\n', "invalid metric or label name"),
])
def test_parse_rejects_what_node_exporter_rejects(text: str, reason: str) -> None:
    with pytest.raises(TextfileError, match=reason):
        parse_textfile(text)


def test_interleaved_samples_join_their_family() -> None:
    text = ('# TYPE x gauge\nx 1\ny 2\nx{a="b"} 3\n'
            '# TYPE h histogram\nh_bucket{le="+Inf"} 1\nz 0\nh_sum 2\nh_count 1\n'
            '# TYPE c_total counter\nc_total 1\nw 1\nc_total{a="1"} 2\n')
    families = by_name(parse_textfile(text))
    assert [f.name for f in families.values()] == ["x", "y", "h", "z", "c", "w"]
    assert len(families["x"].samples) == 2
    assert [s.name for s in families["h"].samples] == ["h_bucket", "h_sum", "h_count"]
    assert [s.labels for s in families["c"].samples] == [{}, {"a": "1"}]


def test_parse_accepts_what_node_exporter_accepts() -> None:
    text = ('# a plain comment\n\n# HELP a Back\\\\slash and \\n newline.\n# TYPE a gauge\n'
            'a{b="c",} 1\n  a{} 2\na{b="q\\"uote\\nnl"}\t3\n\nb 1e3\nc +Inf\nd -Inf\ne NaN\n')
    families = by_name(parse_textfile(text))
    assert families["a"].documentation == "Back\\slash and \n newline."
    assert [(s.labels, s.value) for s in families["a"].samples] == [
        ({"b": "c"}, 1), ({}, 2), ({"b": 'q"uote\nnl'}, 3)]
    assert [families[n].samples[0].value for n in "bcd"] == [1000, float("inf"), float("-inf")]


def test_a_file_with_crlf_line_ends_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "dos.prom").write_bytes(b"a 1\r\n")
    families = TextfileCollector(tmp_path).collect()
    assert [(f.name, f.samples[0].value) for f in families] == [
        ("hostagent_textfile_file_error", 1), ("node_textfile_scrape_error", 1)]


def collect_within(collector: TextfileCollector, seconds: float = 10) -> dict[str, Metric]:
    """collect() in a thread: a collector blocked on a file fails the test, not the run."""
    out: list[list[Metric]] = []
    worker = threading.Thread(target=lambda: out.append(collector.collect()), daemon=True)
    worker.start()
    worker.join(seconds)
    assert out, f"collect() still blocked after {seconds}s"
    return by_name(out[0])


def file_errors(families: dict[str, Metric]) -> dict[str, float]:
    return {Path(s.labels["file"]).name: s.value
            for s in families["hostagent_textfile_file_error"].samples}


def test_only_regular_files_are_read_and_none_blocks(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.prom")
    (tmp_path / "zero.prom").symlink_to("/dev/zero")
    (tmp_path / "dir.prom").mkdir()
    (tmp_path / "linked.prom").symlink_to(tmp_path / "target.txt")
    (tmp_path / "target.txt").write_text("linked_value 2\n")
    (tmp_path / "good.prom").write_text("good_value 1\n")
    try:
        families = collect_within(TextfileCollector(tmp_path))
    finally:
        with contextlib.suppress(OSError):  # release a reader blocked on the FIFO
            os.close(os.open(tmp_path / "fifo.prom", os.O_WRONLY | os.O_NONBLOCK))
    assert families["good_value"].samples[0].value == 1
    assert families["linked_value"].samples[0].value == 2  # a link to a regular file is read
    assert file_errors(families) == {"dir.prom": 1, "fifo.prom": 1, "good.prom": 0,
                                     "linked.prom": 0, "zero.prom": 1}
    assert families["node_textfile_scrape_error"].samples[0].value == 1
    # Deleting the FIFO is enough: nothing was left stuck on it.
    (tmp_path / "fifo.prom").unlink()
    (tmp_path / "zero.prom").unlink()
    (tmp_path / "dir.prom").rmdir()
    again = collect_within(TextfileCollector(tmp_path))
    assert again["node_textfile_scrape_error"].samples[0].value == 0


def test_size_and_count_limits_skip_files_not_the_collector(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(textfile, "MAX_FILE_BYTES", 100)
    monkeypatch.setattr(textfile, "MAX_TOTAL_BYTES", 150)
    monkeypatch.setattr(textfile, "MAX_FILES", 4)
    (tmp_path / "a_big.prom").write_text("".join(f"big{n} 1\n" for n in range(20)))  # 140 B
    (tmp_path / "b.prom").write_text("b_value 1\n")  # 10 B
    (tmp_path / "c.prom").write_text("".join(f"c{n} 1\n" for n in range(15)))  # 80 B
    (tmp_path / "d.prom").write_text("".join(f"d{n} 1\n" for n in range(12)))  # 62 B: over
    (tmp_path / "e.prom").write_text("e_value 1\n")  # the fifth file
    families = collect_within(TextfileCollector(tmp_path))
    assert file_errors(families) == {"a_big.prom": 1, "b.prom": 0, "c.prom": 0, "d.prom": 1,
                                     "e.prom": 1}
    assert "b_value" in families and "c0" in families
    assert not {"big0", "d0", "e_value"} & families.keys()
    logged = {Path(str(kv["file"])).name: str(kv["err"]) for _, kv in warnings(caplog)}
    assert "larger than the limit of 100 bytes" in logged["a_big.prom"]
    assert "total limit of 150 bytes" in logged["d.prom"]
    assert "more than 4 files" in logged["e.prom"]


def test_a_slow_file_costs_the_files_after_it_this_tick_not_every_file(
        tmp_path: Path) -> None:
    (tmp_path / "a.prom").write_text("a_value 1\n")
    (tmp_path / "b.prom").write_text("b_value 1\n")
    families = collect_within(TextfileCollector(tmp_path, budget=0.0))
    assert "a_value" in families and "b_value" not in families
    assert file_errors(families) == {"a.prom": 0, "b.prom": 1}


def test_the_budget_is_a_share_of_the_collectors_timeout() -> None:
    from agent.collectors.catalog import Context, TextfileSettings

    collector = textfile.create(Context(), TextfileSettings(interval=4))
    assert collector._budget == 4 * 0.8 * textfile.BUDGET_SHARE


def test_one_family_with_two_help_texts_is_a_scrape_error(tmp_path: Path) -> None:
    (tmp_path / "a.prom").write_text("# HELP jobs_done Jobs done.\n# TYPE jobs_done gauge\n"
                                     'jobs_done{job="a"} 1\n')
    (tmp_path / "b.prom").write_text("# HELP jobs_done Jobs finished today.\n"
                                     '# TYPE jobs_done gauge\njobs_done{job="b"} 2\n')
    families = by_name(TextfileCollector(tmp_path).collect())
    assert families["node_textfile_scrape_error"].samples[0].value == 1
    # The first file's family stays, the later one's is dropped, as node_exporter does.
    assert [s.labels["job"] for s in families["jobs_done"].samples] == ["a"]
    assert families["jobs_done"].documentation == "Jobs done."


def test_a_bad_file_is_logged_once_per_change(tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    bad = tmp_path / "bad.prom"
    bad.write_text("not a metric line {\n")
    collector = TextfileCollector(tmp_path)
    with caplog.at_level(logging.INFO, logger="hostagent"):
        for _ in range(5):
            collector.collect()
        skipped = [r for r in caplog.records if r.getMessage() == "skipping textfile"]
        assert len(skipped) == 1, "a file that stays bad is logged once, not every tick"
        bad.write_text("ok 1\n")
        collector.collect()
        collector.collect()
        assert [r.getMessage() for r in caplog.records].count("textfile read again") == 1
        bad.write_text("broken again {\n")
        collector.collect()
        skipped = [r for r in caplog.records if r.getMessage() == "skipping textfile"]
        assert len(skipped) == 2, "failing again after a recovery is a change"


def test_an_unchanged_file_is_parsed_once_and_a_changed_or_gone_one_let_go(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[str] = []
    real = textfile.parse_textfile

    def counting(text: str) -> list[Metric]:
        parsed.append(text)
        return real(text)

    monkeypatch.setattr(textfile, "parse_textfile", counting)
    (tmp_path / "a.prom").write_text("a_value 1\n")
    (tmp_path / "b.prom").write_text("b_value 1\n")
    for name in ("a.prom", "b.prom"):  # long ago: a rewrite now has another mtime, however fast
        os.utime(tmp_path / name, (MTIME, MTIME))
    collector = TextfileCollector(tmp_path)
    for _ in range(3):
        families = collect_within(collector)
        assert series([families["a_value"], families["b_value"]]) == {
            ("a_value", frozenset()): 1, ("b_value", frozenset()): 1}
    assert sorted(parsed) == ["a_value 1\n", "b_value 1\n"], "each file parsed once"
    new = tmp_path / "a.prom.new"
    new.write_text("a_value 2\n")
    new.rename(tmp_path / "a.prom")  # as textfiles are meant to be replaced
    with open(tmp_path / "b.prom", "r+") as handle:  # rewritten in place, same size
        handle.write("b_value 3\n")
    families = collect_within(collector)
    assert families["a_value"].samples[0].value == 2 and families["b_value"].samples[0].value == 3
    assert parsed[2:] == ["a_value 2\n", "b_value 3\n"]
    (tmp_path / "b.prom").unlink()
    (tmp_path / "a.prom").write_text("not valid {\n")
    families = collect_within(collector)
    assert "a_value" not in families and file_errors(families) == {"a.prom": 1}
    assert collector._parsed == {}, "nothing held for a file gone or failing"


@pytest.mark.parametrize("fixture", ["types", "mixed"])
def test_files_parsed_in_a_child_process_give_what_the_agent_parses(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fixture: str) -> None:
    directory = copy_dir(fixture, tmp_path)
    monkeypatch.setattr(textfile, "CHILD_PARSE_BYTES", 1 << 40)
    here = TextfileCollector(directory).collect()
    spawned: list[object] = []
    real = textfile.subprocess.run

    def counting(*args: object, **kwargs: object) -> object:
        spawned.append(args)
        return real(*args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(textfile, "CHILD_PARSE_BYTES", 0)
    monkeypatch.setattr(textfile.subprocess, "run", counting)
    there = TextfileCollector(directory).collect()
    assert spawned, "parsed in a child"
    for fmt in (TEXT, OPENMETRICS):
        assert encode(there, fmt) == encode(here, fmt)


def test_a_child_that_cannot_start_or_overruns_the_budget(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = copy_dir("types", tmp_path)
    expected = encode(TextfileCollector(directory).collect(), TEXT)
    monkeypatch.setattr(textfile, "CHILD_PARSE_BYTES", 0)
    monkeypatch.setattr(textfile.sys, "executable", str(tmp_path / "no-such-python"))
    assert encode(TextfileCollector(directory).collect(), TEXT) == expected  # parsed here
    monkeypatch.undo()
    monkeypatch.setattr(textfile, "CHILD_PARSE_BYTES", 0)
    families = by_name(TextfileCollector(directory, budget=1e-4).collect())
    assert families["node_textfile_scrape_error"].samples[0].value == 1


def test_the_heap_is_settled_after_a_large_parse_in_this_process_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = copy_dir("types", tmp_path)
    settles: list[None] = []
    monkeypatch.setattr(textfile.memory, "settle", lambda: settles.append(None))
    monkeypatch.setattr(textfile, "SETTLE_BYTES", 1)
    monkeypatch.setattr(textfile, "CHILD_PARSE_BYTES", 1 << 40)
    TextfileCollector(directory).collect()
    assert len(settles) == 1, "parsed here: its garbage is this process's"
    monkeypatch.setattr(textfile, "CHILD_PARSE_BYTES", 0)
    TextfileCollector(directory).collect()
    assert len(settles) == 1, "parsed in a child: nothing here to settle"
