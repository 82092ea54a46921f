from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.agent import NODE_EXPORTER_NAMES
from agent.exposition.negotiate import accepts_gzip
from agent.exposition.render import RuntimeFamilies, render
from agent.exposition.status import CollectorStatus
from agent.logs import LogfmtFormatter, kv


def record(message: str, level: int = logging.INFO, **fields: object) -> logging.LogRecord:
    rec = logging.LogRecord("t", level, __file__, 1, message, (), None)
    rec.__dict__.update(kv(**fields))
    return rec


def test_logfmt_quotes_what_needs_quoting() -> None:
    line = LogfmtFormatter().format(record("collector failed", collector="cpu",
                                           err='OSError: "x" = y'))
    assert line.startswith("ts=") and " level=info " in line
    assert line.endswith('msg="collector failed" collector=cpu err="OSError: \\"x\\" = y"')


@pytest.mark.parametrize(("level", "prefix"), [(logging.DEBUG, "<7>"), (logging.ERROR, "<3>"),
                                               (logging.CRITICAL, "<2>")])
def test_journald_priority_prefix(level: int, prefix: str) -> None:
    assert LogfmtFormatter(journald=True).format(record("x", level)).startswith(prefix + "ts=")


def log_one_error(stderr_path: Path, journal_stream: str) -> str:
    code = ("import logging; from agent import logs; logs.setup('info'); "
            "logging.getLogger('t').error('boom')")
    with stderr_path.open("w") as stderr:
        subprocess.run([sys.executable, "-c", code], stderr=stderr, check=True, timeout=30,
                       env={**os.environ, "JOURNAL_STREAM": journal_stream})
    return stderr_path.read_text()


def test_prefix_only_when_stderr_is_the_announced_journal_stream(tmp_path: Path) -> None:
    log = tmp_path / "stderr"
    log.touch()
    stat = os.stat(log)
    assert log_one_error(log, f"{stat.st_dev}:{stat.st_ino}").startswith("<3>ts=")
    # Redirected elsewhere (another inode): plain logfmt, no priority prefix in the file.
    assert log_one_error(log, f"{stat.st_dev}:{stat.st_ino + 1}").startswith("ts=")


def test_explicit_gzip_refusal_wins_over_wildcard() -> None:
    assert not accepts_gzip("gzip;q=0, *")
    assert accepts_gzip("identity;q=0.5, *")


def test_node_exporter_meta_series_only_for_node_exporter_collectors() -> None:
    statuses = [CollectorStatus(name, 15, 10, 1, True, 0.01, 1.0, None, 0, 0)
                for name in ("stat", "runtime")]
    text = render(1, {}, statuses, RuntimeFamilies(), ["text"],
                  aliased=NODE_EXPORTER_NAMES).bodies["text"].plain.decode()
    assert 'node_scrape_collector_success{collector="stat"} 1' in text
    assert 'hostagent_collector_success{collector="runtime"} 1' in text
    assert 'node_scrape_collector_success{collector="runtime"}' not in text


def test_durations_keep_useful_precision() -> None:
    from agent.exposition.status import human_duration
    from agent.status_page import render_status_page

    assert [human_duration(s) for s in (0.000148, 0.00235, 0.0124, 0.5, 12.44, 1234.0)] == [
        "148 µs", "2.35 ms", "12.4 ms", "500 ms", "12.4 s", "1234 s"]
    info = {"success": True, "stale": False, "interval_seconds": 15.0,
            "last_duration_seconds": 0.000148, "last_success_age_seconds": 2.5,
            "last_error": None}
    page = render_status_page({"status": "ok", "uptime_seconds": 1.0,
                               "collectors": {"cpu": info}}, [])
    assert ">148 µs</td>" in page and ">2.5 s</td>" in page and "0.000" not in page


def test_collect_once_reports_sub_millisecond_durations() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "agent", "collect", "--once", "--collector.disable-defaults",
         "--collector.loadavg"], capture_output=True, text=True, timeout=60,
        cwd=Path(__file__).resolve().parent.parent)
    assert result.returncode == 0, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"collected in loadavg \d+(\.\d+)? (µs|ms)", line), line


class BlockedStream:
    """A stderr that stops taking writes (a journald under load) until released."""

    def __init__(self) -> None:
        import threading

        self.release = threading.Event()
        self.lines: list[str] = []

    def write(self, text: str) -> int:
        self.release.wait(30)
        self.lines.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def test_a_blocked_stderr_never_blocks_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from agent import logs

    stream = BlockedStream()
    monkeypatch.setattr(sys, "stderr", stream)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.setup("info")
        done = threading.Event()

        def log_many() -> None:
            for n in range(50):
                logging.getLogger("t").warning("line", extra=kv(n=n))
            done.set()

        threading.Thread(target=log_many, daemon=True).start()
        assert done.wait(15), "logging waited for the stream"
        stream.release.set()
        deadline = time.monotonic() + 15
        while len(stream.lines) < 50 and time.monotonic() < deadline:
            time.sleep(0.01)
        text = "".join(stream.lines)
        assert "msg=line n=0" in text and "msg=line n=49" in text
    finally:
        stream.release.set()
        root.handlers[:], level = saved
        root.setLevel(level)


def test_repeated_messages_are_written_once_per_window_with_a_count() -> None:
    from agent.logs import RepeatFilter

    now = [0.0]
    repeats = RepeatFilter(window=60, clock=lambda: now[0])
    bad = [record("skipping textfile", logging.WARNING, file="a.prom", err="bad") for _ in "123"]
    assert [repeats.filter(r) for r in bad] == [True, False, False]
    assert all(repeats.filter(record("reloaded", logging.INFO)) for _ in "12"), "events pass"
    assert repeats.filter(record("skipping textfile", logging.WARNING, file="b.prom",
                                 err="bad")), "other fields: another message"
    now[0] = 61
    later = record("skipping textfile", logging.WARNING, file="a.prom", err="bad")
    assert repeats.filter(later) and later.kv["repeated"] == 2  # type: ignore[attr-defined]
    assert "repeated=2" in LogfmtFormatter().format(later)


def test_a_traceback_crosses_the_queue_as_the_exc_field() -> None:
    from agent.logs import QueueWriter

    writer = QueueWriter()
    try:
        raise ValueError("boom")
    except ValueError:
        rec = logging.LogRecord("t", logging.ERROR, __file__, 1, "died %s", ("x",),
                                sys.exc_info())
    queued = writer.prepare(rec)
    line = LogfmtFormatter().format(queued)
    assert 'msg="died x"' in line and "exc=" in line and "ValueError: boom" in line


def test_what_is_queued_at_exit_is_written_in_order() -> None:
    code = ("import logging; from agent import logs; logs.setup('info')\n"
            "for n in range(500):\n"
            "    logging.getLogger('t').warning(f'line {n}')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=30)
    lines = out.stderr.splitlines()
    assert [line.rpartition("msg=")[2] for line in lines] == \
        [f'"line {n}"' for n in range(500)], out.stderr[-500:]
