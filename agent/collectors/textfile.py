"""textfile: metrics from the *.prom files of one directory, with node_exporter's semantics.

Every file is parsed on its own. A file that cannot be read or parsed, or that carries
client-side timestamps, is skipped whole and sets node_textfile_scrape_error to 1; the other
files are still exported, each with its node_textfile_mtime_seconds. Families of the same name
from several files are merged. A family that conflicts with one read before (another type or
HELP) and a series already read are dropped with a warning, as node_exporter drops them.

Whatever sits in the directory, one file cannot sink the collector or the agent: only regular
files are opened (a FIFO would block the read forever, a link to /dev/zero never end), and
without blocking; a file over MAX_FILE_BYTES, the files past MAX_TOTAL_BYTES or MAX_FILES, and
those left when the time budget is spent are skipped as errors, never read whole. Each file's
outcome is hostagent_textfile_file_error{file}.

A file whose stamp (device, inode, size, mtime, ctime) did not change since its last good
parse is not read again: its families are reused. What a file gone or failing held goes with
the run that notices it.

Families are kept packed (their encoded lines, see agent.exposition.packed). A large file is
parsed in a child process (`python -m agent.collectors.textfile`): a parse makes hundreds of
short-lived objects per series, and whatever the agent's other threads allocate meanwhile
settles among them and keeps Python's arenas after the parse is gone; in the child they live
and die in its own heap, and only the packed families come back."""

from __future__ import annotations

import logging
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from agent import memory
from agent.exposition.formats import pack
from agent.exposition.packed import PackedFamily
from agent.logs import kv

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

log = logging.getLogger("hostagent.textfile")

TYPES = frozenset({"counter", "gauge", "histogram", "summary", "untyped"})
# Sample names a family owns, by the parser's type name (counters as family + "_total").
SUFFIXES = {"counter": ("_total",), "summary": ("", "_sum", "_count"),
            "histogram": ("_bucket", "_sum", "_count")}
OWN_NAMES = frozenset({"node_textfile_mtime_seconds", "node_textfile_scrape_error",
                       "hostagent_textfile_file_error"})
_COMMENT = re.compile(r"#\s+(HELP|TYPE)\s+(\S+)\s*(.*)$")


LEGACY_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LEGACY_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class TextfileError(ValueError):
    """A file node_exporter would refuse: the whole file is skipped."""


def _scan_lines(text: str) -> dict[str, str]:
    """Checks node_exporter's (stricter) parser makes and prometheus_client's does not;
    returns the types the TYPE lines declare, by name."""
    seen: set[tuple[str, str]] = set()
    types: dict[str, str] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.lstrip().startswith("#"):
            if line.strip() and line != line.rstrip():
                raise TextfileError(f"line {number}: whitespace or carriage return after the value")
            continue
        match = _COMMENT.match(line.strip())
        if match is None:
            continue
        kind, name, rest = match.groups()
        if (kind, name) in seen:
            raise TextfileError(f"line {number}: second {kind} line for metric name {name!r}")
        seen.add((kind, name))
        if kind == "TYPE":
            if rest.strip() not in TYPES:
                raise TextfileError(f"line {number}: unknown metric type {rest.strip()!r}")
            types[name] = rest.strip()
    return types


def _owned(family: Metric) -> set[str]:
    return {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}


def _restore_counter(family: Metric) -> Metric:
    """The parser renames the samples of a counter declared without '_total' (foo -> foo_total).
    The exposition cannot show a counter under its bare name, so keep the name and drop the type."""
    restored = Metric(family.name, family.documentation, "unknown")
    restored.samples = [s._replace(name=s.name.removesuffix("_total")) for s in family.samples]
    return restored


def _is_stray_sample(family: Metric) -> bool:
    """The parser yields a sample outside the family being read as a family of its own."""
    return (family.type == "unknown" and not family.documentation
            and [sample.name for sample in family.samples] == [family.name])


def parse_textfile(text: str) -> list[Metric]:
    """One .prom file -> its metric families; raises TextfileError for a file to skip."""
    declared = _scan_lines(text)
    try:
        parsed = list(text_string_to_metric_families(text))
    except Exception as exc:  # the parser signals bad input with assorted exception types
        raise TextfileError(f"text format parsing error: {exc!r}") from None
    families: list[Metric] = []
    owners: dict[str, Metric] = {}
    for family in parsed:
        if any(sample.timestamp is not None for sample in family.samples):
            raise TextfileError("contains unsupported client-side timestamps")
        bad = [s for s in family.samples if not LEGACY_NAME.fullmatch(s.name)
               or not all(LEGACY_LABEL.fullmatch(label) for label in s.labels)]
        if bad:  # quoted UTF-8 names would be rewritten on the way out and could collide
            raise TextfileError(f"invalid metric or label name in {bad[0].name!r}")
        if family.type == "counter" and declared.get(family.name) == "counter":
            family = _restore_counter(family)
        owner = owners.get(family.name) if _is_stray_sample(family) else None
        if owner is not None:
            # As in node_exporter, the sample joins the family its name belongs to.
            owner.samples.extend(family.samples)
            continue
        if _owned(family) & owners.keys():
            raise TextfileError(f"TYPE or HELP for {family.name!r} after its samples")
        families.append(family)
        owners.update(dict.fromkeys(_owned(family), family))
    return families


def _series(sample: Sample) -> tuple[str, frozenset[tuple[str, str]]]:
    return sample.name, frozenset(sample.labels.items())


def merge_files(files: list[tuple[str, list[Metric]]]) -> list[Metric]:
    """Families of all files by name. HELP-less families get node_exporter's
    'Metric read from <files>' help. A packed family only one file holds is passed on as it
    is: its samples are neither decoded nor encoded again."""
    by_name: dict[str, list[tuple[str, Metric]]] = {}
    for path, families in files:
        for family in families:
            if family.name in OWN_NAMES:
                log.warning("dropping metric family the textfile collector exports itself",
                            extra=kv(file=path, family=family.name))
                continue
            by_name.setdefault(family.name, []).append((path, family))
    out: list[Metric] = []
    for name in sorted(by_name):
        (_, first), *_ = parts = by_name[name]
        kept = []
        for path, family in parts:
            if (family.type, family.documentation) != (first.type, first.documentation):
                log.warning("dropping metric family that conflicts with an earlier file",
                            extra=kv(file=path, family=name,
                                     err=f"type {family.type} and help {family.documentation!r}"
                                         f" but earlier {first.type} and {first.documentation!r}"))
                continue
            kept.append((path, family))
        documentation = (first.documentation
                         or "Metric read from " + ", ".join(path for path, _ in parts))
        only = kept[0][1] if len(kept) == 1 else None
        if isinstance(only, PackedFamily) and only.unique:
            if only.count:  # a family declared without samples is not exported
                out.append(only.with_help(documentation))
            continue
        merged = Metric(name, documentation, first.type)
        seen: set[tuple[str, frozenset[tuple[str, str]]]] = set()
        for path, family in kept:
            for sample in family.samples:
                if _series(sample) in seen:
                    log.warning("dropping repeated series", extra=kv(file=path, series=sample.name,
                                                                     labels=sample.labels))
                    continue
                seen.add(_series(sample))
                merged.samples.append(sample)
        if merged.samples:
            out.append(pack(merged))
    return out


# Limits. Parsed, a file takes about 20 times its size in memory for a moment (8 MB of text,
# 140 000 series: 160 MB, 2.4 s of CPU): these keep the agent within its unit's MemoryMax
# whatever lands in the directory. Real textfiles are kilobytes.
MAX_FILE_BYTES = 4 << 20
MAX_TOTAL_BYTES = 8 << 20
MAX_FILES = 1000
# Parsing this much text in this process in one run (several files under CHILD_PARSE_BYTES)
# leaves enough short-lived objects to settle the heap after.
SETTLE_BYTES = 256 << 10
# Files from this size on are parsed in a child process (see the module's docstring).
CHILD_PARSE_BYTES = 256 << 10
# Share of the collector's timeout spent parsing; files left after it are skipped, so a slow
# file costs the files after it this tick, never every file (a timed-out run exports none).
BUDGET_SHARE = 0.5


# What identifies one version of a file: a rewrite in place changes its size or ctime, a
# rename over it (how textfiles are meant to be written) its inode.
Stamp = tuple[int, int, int, int, int]


def _stamp(info: os.stat_result) -> Stamp:
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns


def regular_stat(path: str) -> os.stat_result:
    """The file's stat; TextfileError if it is not a regular file."""
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise TextfileError("not a regular file")
    return info


def read_limited(path: str, limit: int) -> tuple[bytes, os.stat_result]:
    """A regular file's bytes (at most limit) and its stat; OSError or TextfileError
    otherwise. Neither a FIFO, a device nor a file that grows while read can block or flood."""
    regular_stat(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)  # the file opened, in case it was swapped since the stat
        if not stat.S_ISREG(info.st_mode):
            raise TextfileError("not a regular file")
        if info.st_size > limit:
            raise TextfileError(f"larger than the limit of {limit} bytes")
        chunks, size = [], 0
        while chunk := os.read(fd, min(1 << 20, limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise TextfileError(f"larger than the limit of {limit} bytes")
        return b"".join(chunks), info
    finally:
        os.close(fd)


def help_conflicts(files: list[tuple[str, list[Metric]]]) -> bool:
    """Whether two files declare one family with different HELP texts: node_exporter counts
    that as a scrape error (the later file's family is dropped, see merge_files)."""
    helps: dict[str, str] = {}
    for _, families in files:
        for family in families:
            if family.documentation:
                first = helps.setdefault(family.name, family.documentation)
                if first != family.documentation:
                    return True
    return False


def parse_packed(raw: bytes) -> list[Metric]:
    """A file's families, kept packed: a large file's samples must not stay behind as small
    objects."""
    return [pack(family) for family in parse_textfile(raw.decode("utf-8"))]


# Exit status of the child for a file node_exporter would refuse (its reason on stderr).
_REFUSED = 3


def parse_in_child(raw: bytes, timeout: float) -> list[Metric]:
    """parse_packed in a child process; in this one if the child cannot run at all."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    try:
        done = subprocess.run([sys.executable, "-P", "-m", __name__], input=raw,
                              capture_output=True, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        raise TextfileError(f"parse took longer than {timeout:g}s") from None
    except OSError as exc:
        log.warning("cannot start the textfile parser process, parsing in the agent",
                    extra=kv(err=exc))
        return parse_packed(raw)
    if done.returncode == _REFUSED:
        raise TextfileError(done.stderr.decode(errors="replace").strip())
    if done.returncode != 0:
        log.warning("the textfile parser process failed, parsing in the agent",
                    extra=kv(status=done.returncode,
                             err=done.stderr.decode(errors="replace").strip()[-200:]))
        return parse_packed(raw)
    import pickle  # here: an agent without large textfiles never loads it

    families: list[Metric] = pickle.loads(done.stdout)  # made by this very module
    return families


class TextfileCollector:
    def __init__(self, directory: Path | None, budget: float = 5.0) -> None:
        self._directory = directory
        self._budget = budget  # seconds of parsing per run
        self._failing: dict[str, str] = {}  # file -> its error, logged once until it changes
        # file -> the stamp and families of its last good parse: an unchanged file is not read
        # again (parsing costs far more than a stat). Only files of the latest run are kept.
        self._parsed: dict[str, tuple[Stamp, list[Metric]]] = {}
        self._parsed_bytes = 0  # of text parsed in this process in the current run

    def collect(self) -> list[Metric]:
        if self._directory is None:
            return textfile_families([], {}, errored=False)
        files: list[tuple[str, list[Metric]]] = []
        mtimes: dict[str, float] = {}
        outcomes: dict[str, bool] = {}  # file -> read and parsed
        errored = False
        try:
            names = sorted(p.name for p in self._directory.iterdir() if p.name.endswith(".prom"))
        except OSError as exc:
            log.error("failed to read textfile collector directory",
                      extra=kv(path=self._directory, err=exc))
            names, errored = [], True
        deadline = time.monotonic() + self._budget
        left = MAX_TOTAL_BYTES
        self._parsed_bytes = 0
        for index, name in enumerate(names):
            # node_exporter labels the file with its joined, cleaned path.
            path = os.path.normpath(self._directory / name)
            try:
                if index >= MAX_FILES:
                    raise TextfileError(f"more than {MAX_FILES} files in the directory")
                if index and time.monotonic() > deadline:
                    raise TextfileError(f"not read: {self._budget:g}s of parsing spent on "
                                        "the files before it")
                families, info = self._families(path, left)
                left -= info.st_size
            except (OSError, ValueError) as exc:
                if self._failing.get(path) != str(exc):
                    log.warning("skipping textfile", extra=kv(file=path, err=exc))
                    self._failing[path] = str(exc)
                errored = True
                outcomes[path] = False
                continue
            files.append((path, families))
            mtimes[path] = float(info.st_mtime_ns // 1_000_000_000)
            outcomes[path] = True
            if self._failing.pop(path, None) is not None:
                log.info("textfile read again", extra=kv(file=path))
        for gone in [path for path in self._failing if path not in outcomes]:
            del self._failing[gone]
        # Files gone or failing now: their parsed series are freed with this run.
        for gone in [path for path in self._parsed if not outcomes.get(path)]:
            del self._parsed[gone]
        errored = errored or help_conflicts(files)
        if self._parsed_bytes >= SETTLE_BYTES:
            memory.settle()  # the parse's garbage, not what the render makes next, goes
        return textfile_families(merge_files(files), mtimes, errored, outcomes)


    def _families(self, path: str, left: int) -> tuple[list[Metric], os.stat_result]:
        """The file's families, parsed again only when its stamp changed."""
        info = regular_stat(path)
        cached = self._parsed.get(path)
        if cached is None or cached[0] != _stamp(info):
            self._parsed.pop(path, None)  # not held through a parse of its next version
            raw, info = read_limited(path, MAX_FILE_BYTES)
            if len(raw) > left:
                raise TextfileError(f"skipped: with the files before it, over the total "
                                    f"limit of {MAX_TOTAL_BYTES} bytes")
            if len(raw) >= CHILD_PARSE_BYTES:
                families = parse_in_child(raw, self._budget)
            else:  # its garbage is this process's: counted towards a settle
                families = parse_packed(raw)
                self._parsed_bytes += len(raw)
            cached = self._parsed[path] = (_stamp(info), families)
        elif info.st_size > left:
            raise TextfileError(f"skipped: with the files before it, over the total "
                                f"limit of {MAX_TOTAL_BYTES} bytes")
        return cached[1], info


def textfile_families(families: list[Metric], mtimes: dict[str, float],
                      errored: bool, outcomes: dict[str, bool] | None = None) -> list[Metric]:
    out = list(families)
    if outcomes:
        per_file = GaugeMetricFamily(
            "hostagent_textfile_file_error",
            "1 if this file was skipped (unreadable, invalid, not a regular file, over a size "
            "limit or past the time budget), 0 if it was exported.", labels=["file"])
        for path in sorted(outcomes):
            per_file.add_metric([path], 0 if outcomes[path] else 1)
        out.append(per_file)
    if mtimes:
        mtime = GaugeMetricFamily("node_textfile_mtime_seconds",
                                  "Unixtime mtime of textfiles successfully read.", labels=["file"])
        for path in sorted(mtimes):
            mtime.add_metric([path], mtimes[path])
        out.append(mtime)
    out.append(GaugeMetricFamily(
        "node_textfile_scrape_error",
        "1 if there was an error opening or reading a file, 0 otherwise", value=int(errored)))
    return out


def create(context: Context, settings: Any) -> TextfileCollector:
    return TextfileCollector(settings.directory, settings.effective_timeout * BUDGET_SHARE)


def _child() -> int:
    """The child of parse_in_child: the file's bytes in, its packed families out (pickled)."""
    raw = sys.stdin.buffer.read()
    try:
        families = parse_packed(raw)
    except ValueError as exc:  # TextfileError, or not UTF-8
        sys.stderr.write(str(exc))
        return _REFUSED
    import pickle

    sys.stdout.buffer.write(pickle.dumps(families, pickle.HIGHEST_PROTOCOL))
    return 0


if __name__ == "__main__":
    sys.exit(_child())
