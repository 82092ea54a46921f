"""filesystem: node_filesystem_* from statvfs() of every mount, as node_exporter's latest
release: mounts from init's mountinfo (the calling process's when /proc/1 is hidden), every
series labelled with device_error (the error text, "" when statvfs answered),
node_filesystem_mount_info with the device numbers, read-only from the mount or the
superblock options (ro, or ext4's emergency_ro).

A statvfs() on a dead network mount can hang for good, and no thread can be interrupted.
So the calls run in a small private pool and collect() waits for them against a single
deadline; a mount that misses it is reported with device_error 1 and remembered as stuck,
and it is not asked again until its hung call returns. At most WORKERS threads ever exist,
however many mounts hang and however often collect() runs.

As a rule one pool call asks every mount in turn (handing each call to a thread and back
costs far more than the call), recording which mount it is on. If it has not finished within
IN_TURN_SECONDS, it stops after that mount, and the mounts it did not reach are asked one call
each; every call, the one still on its mount included, then has until the one deadline, so
each mount still has the whole timeout and the collection takes at most that long.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from agent.collectors.common import DeviceFilter, Unchanged
from agent.collectors.heldfiles import HeldFiles
from agent.logs import kv
from agent.pool import DaemonThreadPool

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

log = logging.getLogger("hostagent.filesystem")

WORKERS = 4
LABELS = ["device", "mountpoint", "fstype", "device_error"]
MOUNT_INFO_LABELS = ["device", "major", "minor", "mountpoint"]
TIMEOUT_ERROR = "mountpoint timeout"
# How long the call asking every mount in turn has before the mounts it has not reached are
# asked one call each (local mounts answer in microseconds, a slow network one in ms).
IN_TURN_SECONDS = 0.05
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")
# Go's text for the errno values whose glibc text differs by more than the initial capital.
_GO_ERRNO_TEXT = {errno.ESTALE: "stale NFS file handle"}

StatvfsFunc = Callable[[str], os.statvfs_result]


@dataclass(frozen=True)
class Mount:
    device: str
    mountpoint: str
    fstype: str
    options: str
    super_options: str = ""
    major: str | None = None  # from mountinfo; None where only mounts(5) lines were read
    minor: str | None = None

    @property
    def labels(self) -> list[str]:
        return [self.device, self.mountpoint, self.fstype]

    @property
    def readonly(self) -> bool:
        """ro in the mount's or the superblock's options, or ext4's emergency_ro (Linux 6.15+:
        errors=remount-ro fired, and the superblock no longer says ro)."""
        mount = _option_keys(self.options)
        superblock = _option_keys(self.super_options)
        return "ro" in mount or "ro" in superblock or "emergency_ro" in superblock


def _option_keys(options: str) -> set[str]:
    return {option.split("=", 1)[0] for option in options.split(",")} if options else set()


def errno_text(exc: OSError) -> str:
    """Go's text for an errno, as node_exporter puts it in the device_error label."""
    if exc.errno is None:
        return str(exc)
    if exc.errno in _GO_ERRNO_TEXT:
        return _GO_ERRNO_TEXT[exc.errno]
    text = os.strerror(exc.errno)
    return text[:1].lower() + text[1:]


def _decode_mountpoint(path: str) -> str:
    """Only the escapes node_exporter translates (fstab(5)'s space and tab)."""
    return path.replace("\\040", " ").replace("\\011", "\t")


def parse_mountinfo(text: str) -> list[Mount]:
    """/proc/PID/mountinfo as procfs parses it: fields split on single spaces, at least ten,
    the "-" separator fourth from the end; ValueError (the whole file, as procfs) otherwise."""
    mounts = []
    for line in text.splitlines():
        if not line:
            continue
        fields = line.split(" ")
        if len(fields) < 10:
            raise ValueError(f"mountinfo: too few fields in {line!r}")
        if fields[-4] != "-":
            raise ValueError(f"mountinfo: no separator in {line!r}")
        try:
            int(fields[0]), int(fields[1])
            major, minor = (int(n) for n in fields[2].split(":"))
        except ValueError:
            raise ValueError(f"mountinfo: malformed ids in {line!r}") from None
        mounts.append(Mount(fields[-2], _decode_mountpoint(fields[4]), fields[-3], fields[5],
                            fields[-1], str(major), str(minor)))
    return mounts


def parse_mounts(text: str) -> list[Mount]:
    """/proc/*/mounts lines; the kernel's octal escapes (\\040 for a space) in mount points are
    decoded. Lines with fewer than four fields are skipped."""
    mounts = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        mountpoint = _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), parts[1])
        mounts.append(Mount(parts[0], mountpoint, parts[2], parts[3]))
    return mounts


def strip_rootfs(mountpoint: str, rootfs: Path) -> str:
    """'/host/boot' -> '/boot' when the host's root is mounted at rootfs '/host'. As
    node_exporter, a plain prefix strip: '/hostdata' becomes 'data'."""
    root = str(rootfs)
    if root == "/":
        return mountpoint
    return mountpoint.removeprefix(root) or "/"


class FilesystemCollector:
    def __init__(
        self,
        procfs: Path,
        rootfs: Path,
        mount_points_exclude: str | None,  # "" or None: no exclusion
        fs_types_exclude: str | None,
        mount_timeout: float,
        statvfs: StatvfsFunc = os.statvfs,
        stuck: dict[str, Future[Any]] | None = None,
        mount_points_include: str | None = None,
        fs_types_include: str | None = None,
        workers: int = WORKERS,
    ) -> None:
        self._procfs = procfs
        self._rootfs = rootfs
        self._mount_points = DeviceFilter(mount_points_include, mount_points_exclude)
        self._fs_types = DeviceFilter(fs_types_include, fs_types_exclude)
        self._timeout = mount_timeout
        self._statvfs = statvfs
        self._workers = max(workers, 1)
        self._pool = DaemonThreadPool(self._workers, name="statvfs")
        # Path -> the hung call still running for it (its own, or the one asking mounts in
        # turn, which stops once that statvfs returns). Given by the caller to outlive this
        # instance: a collector rebuilt on reload must not call statvfs again on a mount
        # whose earlier call still hangs.
        self._stuck: dict[str, Future[Any]] = {} if stuck is None else stuck
        # Mounts parsed again only when mountinfo reads differently; families built again
        # only when a mount or a statvfs answer differs.
        self._mounts: Unchanged[list[tuple[Mount, str]]] = Unchanged()
        self._mountinfo = (str(procfs / "1" / "mountinfo"), str(procfs / "self" / "mountinfo"))
        self._files = HeldFiles()
        self._families: Unchanged[list[Metric]] = Unchanged()

    def mounts(self) -> list[Mount]:
        """Init's mounts (the host's, when run in a container with the host's /proc; the
        calling process's when /proc is mounted with hidepid), minus excluded mount points and
        fs types."""
        return [mount for mount, _ in self._mounts_and_paths()]

    def _mounts_and_paths(self) -> list[tuple[Mount, str]]:
        """The mounts, each with the path statvfs is called on."""
        try:
            raw = self._files.read(self._mountinfo[0])
        except FileNotFoundError:
            raw = self._files.read(self._mountinfo[1])
        # As node_exporter reads it: bytes as they are (a \r in a mount point stays one).
        text = raw.decode(errors="replace")
        return self._mounts.get(text, lambda: self._parse_mounts(text))

    def _parse_mounts(self, text: str) -> list[tuple[Mount, str]]:
        mounts = []
        for mount in parse_mountinfo(text):
            mount = replace(mount, mountpoint=strip_rootfs(mount.mountpoint, self._rootfs))
            if not (self._mount_points.ignored(mount.mountpoint)
                    or self._fs_types.ignored(mount.fstype)):
                mounts.append((mount, self._path(mount)))
        return mounts

    def collect(self) -> list[Metric]:
        mounts = self._mounts_and_paths()
        for path, call in list(self._stuck.items()):
            if call.done():
                log.info("mount point responds again", extra=kv(path=path))
                del self._stuck[path]

        # Each hung call holds a worker until it returns: grow by one per hung mount, so the
        # healthy mounts always have their workers (bounded: one thread per hung mount).
        self._pool.max_workers = self._workers + len(self._stuck)
        paths = list(dict.fromkeys(path for _, path in mounts if path not in self._stuck))
        results = self._statvfs_all(paths, time.monotonic() + self._timeout)
        stats = tuple((mount, results.get(path, TIMEOUT_ERROR)) for mount, path in mounts)
        return self._families.get(stats, lambda: filesystem_families(stats))

    def _statvfs_all(self, paths: list[str], deadline: float
                     ) -> dict[str, os.statvfs_result | str]:
        """Each path's statvfs answer (result or error text) before the deadline; a path
        whose call is still running then is marked stuck."""
        if not paths:
            return {}
        batch = _Batch(self._statvfs, paths)
        in_turn = self._pool.submit(batch.run)
        with contextlib.suppress(TimeoutError):  # futures' TimeoutError is the builtin
            in_turn.result(timeout=min(IN_TURN_SECONDS, self._timeout))
        current = batch.stop()
        calls: dict[str, Future[Any]] = {} if current is None else {current: in_turn}
        finished = batch.finished()
        rest = [path for path in paths if path not in finished and path != current]
        if rest:
            # The call still on its mount holds a worker: the others keep theirs.
            self._pool.max_workers = self._workers + len(self._stuck) + len(calls)
            calls.update((path, self._pool.submit(self._statvfs, path)) for path in rest)
        wait(calls.values(), timeout=max(0.0, deadline - time.monotonic()))
        results = batch.answers()
        for path, call in calls.items():
            if call is in_turn:
                if call.done():
                    continue  # its answer, if any, is in the batch's
            elif call.done():
                error = call.exception()
                if error is None:
                    results[path] = call.result()
                elif isinstance(error, OSError):
                    results[path] = errno_text(error)
                continue
            elif call.cancel():
                continue  # never started: all workers were held by hung calls
            log.warning("statvfs timed out, mount point marked stuck",
                        extra=kv(path=path, timeout=self._timeout))
            self._stuck[path] = call  # done once that statvfs returns
        return results

    def close(self) -> None:
        """Release the idle workers (a hung call's thread ends when its call returns)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _path(self, mount: Mount) -> str:
        return str(self._rootfs / mount.mountpoint.lstrip("/"))


class _Batch:
    """statvfs of paths in turn, in one pool call, until stopped (the path it is on then is
    still answered): each path's statvfs result or error text (a call failing otherwise
    gives neither, as a lost call)."""

    def __init__(self, statvfs: StatvfsFunc, paths: list[str]) -> None:
        self._statvfs = statvfs
        self._paths = paths
        self._lock = threading.Lock()
        self._current: str | None = None  # the path whose statvfs is running
        self._stopped = False
        self._results: dict[str, os.statvfs_result | str] = {}
        self._finished: set[str] = set()  # answered or not (an error other than OSError)

    def run(self) -> None:
        statvfs = self._statvfs
        for path in self._paths:
            with self._lock:
                if self._stopped:
                    return
                self._current = path
            answer: os.statvfs_result | str | None
            try:
                answer = statvfs(path)
            except OSError as exc:
                answer = errno_text(exc)
            except Exception:  # reported as no answer, as a lost call
                answer = None
            with self._lock:
                if answer is not None:
                    self._results[path] = answer
                self._finished.add(path)
                self._current = None
        with self._lock:
            self._stopped = True

    def stop(self) -> str | None:
        """Start no other path; the path whose statvfs is still running, if any."""
        with self._lock:
            self._stopped = True
            return self._current

    def answers(self) -> dict[str, os.statvfs_result | str]:
        with self._lock:
            return dict(self._results)

    def finished(self) -> set[str]:
        with self._lock:
            return set(self._finished)


def filesystem_families(stats: Sequence[tuple[Mount, os.statvfs_result | str | None]]
                        ) -> list[Metric]:
    """Per mount its statvfs result, or the error text (None: an error without text). A mount
    in error has only device_error and readonly (0 when it timed out, as node_exporter);
    the same label set twice counts once."""
    def gauge(name: str, help_text: str) -> GaugeMetricFamily:
        return GaugeMetricFamily(f"node_filesystem_{name}", help_text, labels=LABELS)

    size = gauge("size_bytes", "Filesystem size in bytes.")
    free = gauge("free_bytes", "Filesystem free space in bytes.")
    avail = gauge("avail_bytes", "Filesystem space available to non-root users in bytes.")
    files = gauge("files", "Filesystem total file nodes.")
    files_free = gauge("files_free", "Filesystem total free file nodes.")
    readonly = gauge("readonly", "Filesystem read-only status.")
    device_error = gauge(
        "device_error", "Whether an error occurred while getting statistics for the given device.")
    mount_info = GaugeMetricFamily("node_filesystem_mount_info", "Filesystem mount information.",
                                   labels=MOUNT_INFO_LABELS)
    seen: set[tuple[str | None, ...]] = set()
    for mount, st in stats:
        error = "" if isinstance(st, os.statvfs_result) else (st or "error")
        key = (*mount.labels, error, mount.major, mount.minor)
        if key in seen:
            continue
        seen.add(key)
        labels = [*mount.labels, error]
        device_error.add_metric(labels, 0.0 if error == "" else 1.0)
        ro = mount.readonly and error != TIMEOUT_ERROR
        readonly.add_metric(labels, 1.0 if ro else 0.0)
        if not isinstance(st, os.statvfs_result):
            continue
        # f_bsize, as node_exporter uses statfs' Bsize.
        size.add_metric(labels, float(st.f_blocks) * st.f_bsize)
        free.add_metric(labels, float(st.f_bfree) * st.f_bsize)
        avail.add_metric(labels, float(st.f_bavail) * st.f_bsize)
        files.add_metric(labels, float(st.f_files))
        files_free.add_metric(labels, float(st.f_ffree))
        if mount.major is not None and mount.minor is not None:
            mount_info.add_metric([mount.device, mount.major, mount.minor, mount.mountpoint], 1.0)
    families = [size, free, avail, files, files_free, readonly, device_error, mount_info]
    return [family for family in families if family.samples]


def create(context: Context, settings: Any) -> FilesystemCollector:
    return FilesystemCollector(context.procfs, context.rootfs, settings.mount_points_exclude,
                               settings.fs_types_exclude, settings.effective_mount_timeout,
                               stuck=context.state.setdefault("stuck", {}),
                               mount_points_include=settings.mount_points_include,
                               fs_types_include=settings.fs_types_include,
                               workers=settings.stat_workers)
