"""Helpers collectors share: device filters, the Prometheus label-name rule, small sysfs
readers with node_exporter's read semantics, sorted metric families."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Hashable, Iterable
from pathlib import Path
from typing import Generic, TypeVar

from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample

from agent.collectors.heldfiles import read_to_end

T = TypeVar("T")

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


class DirectoryFd:
    """An open directory's descriptor as a context manager (closed on exit)."""

    __slots__ = ("fd",)

    def __init__(self, path: Path | str) -> None:
        self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)

    def __enter__(self) -> int:
        return self.fd

    def __exit__(self, *exc_info: object) -> None:
        os.close(self.fd)


def open_dir(path: Path | str) -> DirectoryFd:
    """A directory's descriptor, for reading many of its files by name: opening relative to
    it spares the kernel resolving the whole path (symlinks through /sys/class included)
    for each, about a third of what reading a sysfs attribute costs. OSError at once when
    the directory cannot be opened; use the result in a with statement."""
    return DirectoryFd(path)


def read_file_bytes(path: Path | str, dir_fd: int | None = None) -> bytes:
    """A whole file with os.open/os.read: half the system calls of open() (no fstat, isatty
    or lseek), which is most of what reading a small procfs/sysfs file costs. Reads until
    end of file: procfs's seq_file answers a large file in page-sized pieces. With dir_fd
    (see open_dir), path is relative to that directory."""
    fd = os.open(path, os.O_RDONLY, dir_fd=dir_fd)
    try:
        return read_to_end(fd)
    finally:
        os.close(fd)


def read_file(path: Path | str) -> str | None:
    """A whole file as text (undecodable bytes replaced); None when missing or unreadable."""
    try:
        return read_file_bytes(path).decode(errors="replace")
    except OSError:
        return None


def read_raw(path: Path | str, dir_fd: int | None = None) -> bytes | None:
    """A whole file's bytes; None when missing or unreadable. For the input of Unchanged."""
    try:
        return read_file_bytes(path, dir_fd)
    except OSError:
        return None


def read_text(path: Path | str, dir_fd: int | None = None) -> str | None:
    """A small sysfs/procfs file, stripped; None when missing or unreadable (EINVAL, EIO,
    EACCES are common for attributes a driver does not implement)."""
    try:
        return read_file_bytes(path, dir_fd).decode(errors="replace").strip()
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


def numbered(directory: str, prefix: str) -> list[str]:
    """The names glob's prefix[0-9]* matches in directory, sorted (files too); empty when it
    cannot be listed. One listing and a test of each name: glob's pattern machinery costs far
    more, several times over when its code is out of the caches, as between ticks."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    start = len(prefix)
    return sorted(name for name in names
                  if name.startswith(prefix) and "0" <= name[start:start + 1] <= "9")


# node_exporter and procfs read sysfs attributes with one read of this many bytes: a broken
# driver that answers EAGAIN fails at once instead of being polled, and longer values are cut.
SYSFS_READ_SIZE = 128


def read_attribute_bytes(path: Path | str, size: int = SYSFS_READ_SIZE,
                         dir_fd: int | None = None) -> bytes:
    """One read(2) of a sysfs attribute; OSError as the kernel reports it (EIO, EAGAIN, ...).
    With dir_fd (see open_dir), path is relative to that directory."""
    fd = os.open(path, os.O_RDONLY, dir_fd=dir_fd)
    try:
        return os.read(fd, size)
    finally:
        os.close(fd)


def read_attribute(path: Path | str, dir_fd: int | None = None) -> str | None:
    """procfs's SysReadFile: one read, surrounding whitespace trimmed; None when unreadable."""
    try:
        return read_attribute_bytes(path, dir_fd=dir_fd).decode(errors="replace").strip()
    except OSError:
        return None


_GO_FLOAT = re.compile(r"[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?|inf|infinity|nan)",
                       re.IGNORECASE)


def parse_float(text: str) -> float | None:
    """Go's strconv.ParseFloat for decimal text: no surrounding spaces, no underscores."""
    if text.isascii() and text.isdigit():  # the common case, without the regex
        return float(text)
    if not _GO_FLOAT.fullmatch(text):
        return None
    return float(text)


def parse_int(text: str, base: int = 10) -> int | None:
    """Go's strconv.ParseInt/ParseUint; base 0 accepts the 0x, 0o and 0b prefixes."""
    if not text or text != text.strip() or "_" in text:
        return None
    try:
        return int(text, base)
    except ValueError:
        return None


def go_order(families: Iterable[Metric]) -> list[Metric]:
    """Families by name and each family's samples by label values (in label-name order), as
    node_exporter's registry orders its output (the text encoder sorts labels by name); a
    family without samples is left out, as there."""
    ordered = sorted((f for f in families if f.samples), key=exposed_name)
    for family in ordered:
        if len(family.samples) > 1:
            family.samples.sort(key=_label_values)
    return ordered


def _label_values(sample: Sample) -> list[str]:
    labels = sample.labels
    return [labels[k] for k in sorted(labels)]


def exposed_name(family: Metric) -> str:
    """The name the text format shows (prometheus_client keeps counters' names without _total)."""
    return family.name + "_total" if family.type == "counter" else family.name


class Families:
    """Families by name, first help and type kept; a repeated series is dropped (node_exporter
    rejects both), output sorted by name and label values as node_exporter's registry does.
    The same Metric objects as GaugeMetricFamily / CounterMetricFamily with add_metric,
    built without their per-sample overhead."""

    def __init__(self) -> None:
        # name as given -> (family, its first label names, whether it is a counter)
        self._families: dict[str, tuple[Metric, tuple[str, ...], bool]] = {}
        self._seen: set[tuple[str, frozenset[tuple[str, str]]]] = set()

    def add(self, name: str, help_text: str, labels: Iterable[str], values: list[str],
            value: float, counter: bool = False, untyped: bool = False) -> None:
        """labels may differ between samples of a family (node_power_supply_info)."""
        pairs = dict(zip(labels, values, strict=True))
        key = (name, frozenset(pairs.items()))  # the same labels in any order
        if key in self._seen:
            return
        self._seen.add(key)
        entry = self._families.get(name)
        if entry is None:
            if not name:
                raise ValueError("metric name cannot be empty")
            if counter:  # CounterMetricFamily: the family's name without _total
                entry = (family(name[:-6] if name.endswith("_total") else name, help_text,
                                "counter"), tuple(pairs), True)
            else:
                entry = (family(name, help_text, "unknown" if untyped else "gauge"),
                         tuple(pairs), False)
            self._families[name] = entry
        metric, label_names, is_counter = entry
        if not counter:
            metric.samples.append(sample(metric.name, pairs, value))
        else:  # add_metric: values zipped with the family's first label names
            metric.samples.append(sample(metric.name + "_total" if is_counter else metric.name,
                                         dict(zip(label_names, values, strict=False)), value))

    def result(self) -> list[Metric]:
        out: list[Metric] = []
        for name in sorted(self._families):
            metric = self._families[name][0]
            if len(metric.samples) > 1:
                metric.samples.sort(key=_label_values)
            out.append(metric)
        return out


class Unchanged(Generic[T]):
    """What was built from an input, built again only when the input differs from the
    previous call's. Most procfs/sysfs files of a server read the same bytes tick after tick
    (identities, states, limits, idle devices' counters), and parsing them and building their
    samples costs several times what reading them does. The input must be the raw bytes
    (or tuples of them, with the names they came from), so equal input means equal output.
    What `build` returns is handed out again: callers must not mutate it."""

    __slots__ = ("_input", "_output")

    def __init__(self) -> None:
        self._input: Hashable = _NOTHING
        self._output: T | None = None

    def get(self, raw: Hashable, build: Callable[[], T]) -> T:
        if self._output is None or raw != self._input:
            self._output = build()
            self._input = raw
        return self._output


_NOTHING = object()


class Singles:
    """A collector's single-sample, label-less families, each handed out again as the same
    object while its value stays the same: building one costs more than comparing its value,
    and the renderer skips a family it has seen at once. Values compare exactly (same type,
    same sign of zero; NaN never equal). Call done() after each collection: families not
    asked for since are forgotten."""

    __slots__ = ("_last", "_next")

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, Metric]] = {}
        self._next: dict[str, tuple[float, Metric]] = {}

    def get(self, name: str, help_text: str, typ: str, value: float) -> Metric:
        """family(name, help_text, typ, [sample(name, {}, value)]); a counter's name is
        given with its _total (the sample's), the family's is without it."""
        old = self._last.get(name)
        if (old is not None and old[0] == value and type(old[0]) is type(value)
                and (value or math.copysign(1.0, value) == math.copysign(1.0, old[0]))):
            metric = old[1]
        else:
            metric = family(name.removesuffix("_total") if typ == "counter" else name,
                            help_text, typ, [sample(name, {}, value)])
        self._next[name] = (value, metric)
        return metric

    def done(self) -> None:
        self._last, self._next = self._next, {}


_new_metric = Metric.__new__
_new_tuple = tuple.__new__
# Sample's fields after (name, labels, value), at their defaults, whatever their number.
_SAMPLE_TAIL = tuple(Sample("", {}, 0.0))[3:]


def family(name: str, help_text: str, typ: str, samples: list[Sample] | None = None,
           unit: str = "") -> Metric:
    """A metric family as prometheus_client's *MetricFamily classes build it (equal to
    theirs), without their per-call name validation: for names the caller made valid.
    A counter's name is given without _total; its samples carry it."""
    metric = _new_metric(Metric)
    metric.name = name
    metric.documentation = help_text
    metric.unit = unit
    metric.type = typ
    metric.samples = [] if samples is None else samples
    return metric


def sample(name: str, labels: dict[str, str], value: float) -> Sample:
    """Sample(name, labels, value) at half the cost of the namedtuple's constructor."""
    return _new_tuple(Sample, (name, labels, value, *_SAMPLE_TAIL))


def bare_counter(name: str, help_text: str, value: float) -> Metric:
    """A counter whose name has no _total suffix, as some of node_exporter's and
    process-exporter's are; the text format keeps its name as it is."""
    family = Metric(name, help_text, "counter")
    family.add_sample(name, {}, value)
    return family


def gauge(name: str, help_text: str, value: float, singles: Singles | None = None) -> Metric:
    """GaugeMetricFamily(name, help_text, value=value), built directly (see family); with
    singles, the family it hands out (the same object while the value is the same)."""
    if singles is not None:
        return singles.get(name, help_text, "gauge", value)
    return family(name, help_text, "gauge", [sample(name, {}, value)])


def counter(name: str, help_text: str, value: float, singles: Singles | None = None) -> Metric:
    """CounterMetricFamily(name, help_text, value=value), built directly (see family); name
    with or without its _total. singles as for gauge."""
    name = name.removesuffix("_total")
    if singles is not None:
        return singles.get(name + "_total", help_text, "counter", value)
    return family(name, help_text, "counter", [sample(name + "_total", {}, value)])
