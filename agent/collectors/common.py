"""Helpers collectors share: device filters, file-change stamps, the
Prometheus label-name rule, small sysfs readers."""

from __future__ import annotations

import os
import re
from pathlib import Path

LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class DeviceFilter:
    """node_exporter's device filter: a device is kept if it matches the include regex,
    or does not match the exclude regex (the two are mutually exclusive); both unanchored."""

    def __init__(self, include: str | None, exclude: str | None) -> None:
        self._include = re.compile(include) if include else None
        self._exclude = re.compile(exclude) if exclude else None

    def ignored(self, device: str) -> bool:
        if self._exclude is not None and self._exclude.search(device):
            return True
        return self._include is not None and not self._include.search(device)


def file_stamp(path: Path) -> tuple[int, int, int] | None:
    """What changes when a file is replaced or rewritten (mtime, size, inode); None if absent."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


def read_text(path: Path | str) -> str | None:
    """A small sysfs/procfs file, stripped; None when missing or unreadable (EINVAL, EIO,
    EACCES are common for attributes a driver does not implement)."""
    try:
        with open(path, "rb") as handle:
            return handle.read().decode(errors="replace").strip()
    except OSError:
        return None


def read_int(path: Path | str) -> int | None:
    text = read_text(path)
    if text is None:
        return None
    try:
        return int(text, 0) if text.startswith("0x") else int(text)
    except ValueError:
        return None


def list_dir(path: Path | str) -> list[str]:
    """Sorted entries of a directory; empty when it is missing."""
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []
