"""filesystem: node_filesystem_* from statvfs() of every mount, as node_exporter 1.5.

A statvfs() on a dead network mount can hang for good, and no thread can be interrupted.
So the calls run in a small private pool and collect() waits for all of them against a
single deadline; a mount that misses it is reported with device_error 1 and remembered as
stuck, and it is not asked again until its hung call returns. At most WORKERS threads ever
exist, however many mounts hang and however often collect() runs.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from concurrent.futures import Future, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from agent.logs import kv
from agent.pool import DaemonThreadPool

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

log = logging.getLogger("hostagent.filesystem")

WORKERS = 4
LABELS = ["device", "mountpoint", "fstype"]
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")

StatvfsFunc = Callable[[str], os.statvfs_result]


@dataclass(frozen=True)
class Mount:
    device: str
    mountpoint: str
    fstype: str
    options: str

    @property
    def labels(self) -> list[str]:
        return [self.device, self.mountpoint, self.fstype]

    @property
    def readonly(self) -> bool:
        return "ro" in self.options.split(",")


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
    """'/host/boot' -> '/boot' when the host's root is mounted at rootfs '/host'."""
    root = str(rootfs)
    if root == "/":
        return mountpoint
    if mountpoint == root:
        return "/"
    return mountpoint.removeprefix(root) if mountpoint.startswith(root + "/") else mountpoint


class FilesystemCollector:
    def __init__(
        self,
        procfs: Path,
        rootfs: Path,
        mount_points_exclude: str,
        fs_types_exclude: str,
        mount_timeout: float,
        statvfs: StatvfsFunc = os.statvfs,
        stuck: dict[str, Future[os.statvfs_result]] | None = None,
    ) -> None:
        self._procfs = procfs
        self._rootfs = rootfs
        self._mount_points_exclude = re.compile(mount_points_exclude)
        self._fs_types_exclude = re.compile(fs_types_exclude)
        self._timeout = mount_timeout
        self._statvfs = statvfs
        self._pool = DaemonThreadPool(WORKERS, name="statvfs")
        # Path -> the hung call still running for it. Given by the caller to outlive this
        # instance: a collector rebuilt on reload must not call statvfs again on a mount
        # whose earlier call still hangs.
        self._stuck: dict[str, Future[os.statvfs_result]] = {} if stuck is None else stuck

    def mounts(self) -> list[Mount]:
        """Init's mounts (the host's, when run in a container with the host's /proc), minus
        excluded mount points and fs types; repeated (device, mountpoint, fstype) count once."""
        try:
            text = (self._procfs / "1" / "mounts").read_text(errors="replace")
        except FileNotFoundError:  # /proc mounted with hidepid
            text = (self._procfs / "mounts").read_text(errors="replace")
        seen: set[tuple[str, ...]] = set()
        mounts = []
        for mount in parse_mounts(text):
            mount = replace(mount, mountpoint=strip_rootfs(mount.mountpoint, self._rootfs))
            key = tuple(mount.labels)
            if (self._mount_points_exclude.search(mount.mountpoint)
                    or self._fs_types_exclude.search(mount.fstype) or key in seen):
                continue
            seen.add(key)
            mounts.append(mount)
        return mounts

    def collect(self) -> list[Metric]:
        mounts = self.mounts()
        for path, call in list(self._stuck.items()):
            if call.done():
                log.info("mount point responds again", extra=kv(path=path))
                del self._stuck[path]

        # Each hung call holds a worker until it returns: grow by one per hung mount, so the
        # healthy mounts always have WORKERS threads (bounded: one thread per hung mount).
        self._pool.max_workers = WORKERS + len(self._stuck)
        calls: dict[str, Future[os.statvfs_result]] = {}
        for mount in mounts:
            path = self._path(mount)
            if path not in self._stuck and path not in calls:
                calls[path] = self._pool.submit(self._statvfs, path)
        wait(calls.values(), timeout=self._timeout)

        results: dict[str, os.statvfs_result] = {}
        for path, call in calls.items():
            if call.done():
                if not isinstance(call.exception(), OSError):
                    results[path] = call.result()
            elif not call.cancel():  # started and still running: hung
                log.warning("statvfs timed out, mount point marked stuck",
                            extra=kv(path=path, timeout=self._timeout))
                self._stuck[path] = call
        return filesystem_families([(m, results.get(self._path(m))) for m in mounts])

    def close(self) -> None:
        """Release the idle workers (a hung call's thread ends when its call returns)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _path(self, mount: Mount) -> str:
        return str(self._rootfs / mount.mountpoint.lstrip("/"))


def filesystem_families(stats: list[tuple[Mount, os.statvfs_result | None]]) -> list[Metric]:
    """None stands for a mount whose statvfs failed or timed out: only device_error is shown."""
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
    for mount, st in stats:
        device_error.add_metric(mount.labels, 1.0 if st is None else 0.0)
        if st is None:
            continue
        # f_bsize, as node_exporter uses statfs' Bsize; on Linux it equals f_frsize in practice.
        size.add_metric(mount.labels, float(st.f_blocks * st.f_bsize))
        free.add_metric(mount.labels, float(st.f_bfree * st.f_bsize))
        avail.add_metric(mount.labels, float(st.f_bavail * st.f_bsize))
        files.add_metric(mount.labels, float(st.f_files))
        files_free.add_metric(mount.labels, float(st.f_ffree))
        readonly.add_metric(mount.labels, 1.0 if mount.readonly else 0.0)
    families = [size, free, avail, files, files_free, readonly, device_error]
    return [family for family in families if family.samples]


def create(context: Context, settings: Any) -> FilesystemCollector:
    return FilesystemCollector(context.procfs, context.rootfs, settings.mount_points_exclude,
                               settings.fs_types_exclude, settings.effective_mount_timeout,
                               stuck=context.state.setdefault("stuck", {}))
