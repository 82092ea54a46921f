"""logfmt logging to stderr, with syslog priority prefixes when journald reads the stream.

Records go through a bounded queue to one writer thread, so a slow stderr (journald under
load) never blocks the event loop or a collector thread: a full queue drops and counts. A
message repeated with the same fields is written once per window, then again with the number
of repeats left out, so a fault that persists logs once, not every tick.
"""

from __future__ import annotations

import atexit
import copy
import json
import logging
import os
import queue
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

_SYSLOG_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
                    logging.CRITICAL: 2}


def _quote(value: object) -> str:
    text = str(value)
    if text and not any(c in text for c in ' ="\\\n\t'):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


class LogfmtFormatter(logging.Formatter):
    def __init__(self, journald: bool = False) -> None:
        super().__init__()
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        fields: dict[str, Any] = {
            "ts": f"{ts}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
        }
        fields.update(getattr(record, "kv", {}))
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:  # formatted before it was queued
            fields["exc"] = record.exc_text
        line = self.line(fields)
        if self.journald:
            line = f"<{_SYSLOG_PRIORITY.get(record.levelno, 6)}>{line}"
        return line

    def line(self, fields: dict[str, Any]) -> str:
        return " ".join(f"{key}={_quote(value)}" for key, value in fields.items())


class JsonFormatter(LogfmtFormatter):
    """One JSON object per line (--log.format=json), the same fields as logfmt."""

    def line(self, fields: dict[str, Any]) -> str:
        return json.dumps(fields, default=str, ensure_ascii=False)


def stderr_is_journal(environ: Mapping[str, str]) -> bool:
    """True when stderr is the journald stream systemd announced in JOURNAL_STREAM
    ("device:inode"), not a file or pipe it was redirected to."""
    try:
        device, inode = (int(part) for part in environ["JOURNAL_STREAM"].split(":"))
        stat = os.fstat(sys.stderr.fileno())
    except (KeyError, ValueError, OSError):
        return False
    return (stat.st_dev, stat.st_ino) == (device, inode)


class RepeatFilter(logging.Filter):
    """Passes the first of identical warnings and errors (logger, level, message, fields) and
    drops the repeats within `window` seconds; the next one after that carries `repeated=N`,
    the number dropped. Keys are bounded (the oldest forgotten first). Information lines and
    the lifecycle's own (logger "hostagent": start, reloads, stop) are events, always written."""

    def __init__(self, window: float = 600.0, keys: int = 1000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window = window
        self._keys = keys
        self._clock = clock
        self._seen: OrderedDict[tuple[Any, ...], list[float]] = OrderedDict()  # [since, n]
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or record.name == "hostagent":
            return True
        fields = getattr(record, "kv", {})
        key = (record.name, record.levelno, record.msg,
               tuple((k, str(v)) for k, v in fields.items()))
        now = self._clock()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen[0] < self.window:
                seen[1] += 1
                return False
            self._seen[key] = [now, 0]
            self._seen.move_to_end(key)
            while len(self._seen) > self._keys:
                self._seen.popitem(last=False)
        if seen is not None and seen[1]:
            record.kv = {**fields, "repeated": int(seen[1])}
        return True


class QueueWriter(logging.Handler):
    """Hands records to the writer thread without waiting: a full queue drops the record and
    counts it (the count is written with the next record that gets through). What
    logging.handlers.QueueHandler does, without loading that module (and pickle, which it
    imports for its socket handlers): ~0.4 MB of RSS."""

    def __init__(self, size: int = 10_000, fmt: str = "logfmt") -> None:
        super().__init__()
        self.queue: queue.Queue[logging.LogRecord | None] = queue.Queue(size)
        self.dropped = 0
        self.fmt = fmt  # what a child process of the agent writes its lines in

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.enqueue(self.prepare(record))
        except Exception:
            self.handleError(record)

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # The message and traceback as text now: the record crosses threads, and the
        # writer's formatter must see the fields, not a pre-formatted line.
        record = copy.copy(record)
        record.msg, record.args = record.getMessage(), None
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if self.dropped:
            record.kv = {**getattr(record, "kv", {}), "dropped_log_lines": self.dropped}
            self.dropped = 0
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1


class _Writer:
    """The thread writing what the queue holds, until a None (what QueueListener does)."""

    def __init__(self, records: queue.Queue[logging.LogRecord | None],
                 handler: logging.Handler) -> None:
        self._records, self._handler = records, handler
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while (record := self._records.get()) is not None:
            self._handler.handle(record)

    def stop(self) -> None:
        if self._thread.is_alive():
            self._records.put(None)  # after what is queued
            self._thread.join()


def setup(level: str, fmt: str = "logfmt", stream: Any = None) -> QueueWriter:
    """Root logging through the queue to stream (stderr); returns the queue's handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    formatter = JsonFormatter if fmt == "json" else LogfmtFormatter
    handler.setFormatter(formatter(journald=stderr_is_journal(os.environ)))
    writer = QueueWriter(fmt=fmt)
    writer.addFilter(RepeatFilter())
    listener = _Writer(writer.queue, handler)
    listener.start()
    atexit.register(listener.stop)  # writes what is queued before the process ends
    root = logging.getLogger()
    root.handlers[:] = [writer]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    return writer


def kv(**fields: Any) -> dict[str, Any]:
    """Structured fields for a log call: log.info("msg", extra=kv(collector="cpu"))."""
    return {"kv": fields}
