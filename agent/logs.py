"""logfmt logging to stderr, with syslog priority prefixes when journald reads the stream."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping
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


def setup(level: str, fmt: str = "logfmt") -> None:
    handler = logging.StreamHandler(sys.stderr)
    formatter = JsonFormatter if fmt == "json" else LogfmtFormatter
    handler.setFormatter(formatter(journald=stderr_is_journal(os.environ)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def kv(**fields: Any) -> dict[str, Any]:
    """Structured fields for a log call: log.info("msg", extra=kv(collector="cpu"))."""
    return {"kv": fields}
