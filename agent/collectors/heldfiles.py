"""Kernel-generated files kept open between collections and read again with pread at offset
0: procfs's and sysfs's read handlers build their answer afresh on every read from the start,
so the bytes are those a new open would give, without resolving the path and allocating a
file each time (open and close are most of what reading a small procfs/sysfs file costs).

Only files on proc and sysfs mounts are held. Any other file (fixture trees, files replaced
by rename) is opened on every read, as an open file would keep showing a replaced inode. A
held file that fails to read is closed and opened again by its path, whose answer counts:
a removed sysfs node answers ENODEV through the old descriptor (a removed procfs entry
EIO), ENOENT by its path. Paths whose meaning can move to another kernel object (a renamed
network device's directory) need their owner's check that the object is still the one held
(see netclass).

A held file belongs to one collector, used by one thread at a time. The process holds at
most HELD_LIMIT descriptors, and each owner (a Share: one per HeldFiles, one per collector
holding files of its own) at most SHARE of them, so that one owner with many files (per-CPU
attributes of a large host, many network devices) cannot leave the others none; beyond
either, files are opened on every read as before.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource

_CHUNK = 65536
KERNEL_FILESYSTEMS = frozenset({"proc", "sysfs"})
# A small share of the descriptors the process may open, which its connections need more.
HELD_LIMIT = max(0, min(256, resource.getrlimit(resource.RLIMIT_NOFILE)[0] // 8))
# At most this many of them for any one owner: the rest stays for the others.
SHARE = HELD_LIMIT // 2

# What a held descriptor answers when its file is gone: the path is asked again. Any other
# error is the file's own answer, which a new open would get as well. A removed sysfs node
# answers ENODEV, a removed sysctl ENOENT, a removed procfs entry (a module's
# /proc/net/stat/nf_conntrack unloaded and loaded again) EIO for good; an EIO that is the
# file's own answer comes again from the new open.
GONE = frozenset({errno.ENODEV, errno.ENOENT, errno.ESTALE, errno.EIO})

_held = 0
# st_dev -> whether that mount is proc or sysfs, from /proc/self/mountinfo.
_kernel_devices: dict[int, bool] = {}


def _mount_types() -> dict[int, bool]:
    """Each mounted filesystem's device -> whether it is proc or sysfs."""
    out: dict[int, bool] = {}
    try:
        with open("/proc/self/mountinfo", "rb") as mountinfo:
            for line in mountinfo:
                fields, _, tail = line.partition(b" - ")
                parts = fields.split()
                if len(parts) < 3 or not tail:
                    continue
                major, _, minor = parts[2].partition(b":")
                out[os.makedev(int(major), int(minor))] = (
                    tail.split(b" ", 1)[0].decode() in KERNEL_FILESYSTEMS)
    except (OSError, ValueError):
        pass
    return out


def kernel_generated(fd: int) -> bool:
    """Whether the open file is on a proc or sysfs mount."""
    device = os.fstat(fd).st_dev
    known = _kernel_devices.get(device)
    if known is None:
        _kernel_devices.update(_mount_types())
        known = _kernel_devices.setdefault(device, False)
    return known


def read_to_end(fd: int, offset: int | None = None) -> bytes:
    """To end of file from offset 0 (pread) or from the file's position (read); until a read
    answers nothing, as seq_file answers a large file in page-sized pieces."""
    position = 0
    chunks = []
    while chunk := (os.read(fd, _CHUNK) if offset is None else os.pread(fd, _CHUNK, position)):
        chunks.append(chunk)
        position += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def available() -> int:
    """How many more descriptors may be held."""
    return HELD_LIMIT - _held


class Share:
    """One owner's part of the held descriptors: at most `limit` (SHARE) of them."""

    __slots__ = ("held", "limit")

    def __init__(self, limit: int | None = None) -> None:
        self.limit = SHARE if limit is None else limit
        self.held = 0

    def available(self) -> int:
        """How many more descriptors this owner may hold."""
        return max(0, min(self.limit - self.held, HELD_LIMIT - _held))


class HeldFile:
    """One file, read whole (or with one read of `size` bytes, as sysfs attributes are) on
    every call; OSError as opening and reading it would raise. Held within share's part of
    the budget when one is given, else only within the process's."""

    __slots__ = ("_fd", "_share", "_size", "path")

    def __init__(self, path: str | os.PathLike[str], size: int | None = None,
                 share: Share | None = None) -> None:
        self.path = os.fspath(path)
        self._size = size
        self._share = share
        self._fd = -1  # -1: not held (yet); -2: not a kernel file, never held

    def read(self) -> bytes:
        fd = self._fd
        if fd >= 0:
            try:
                return os.pread(fd, self._size, 0) if self._size else read_to_end(fd, 0)
            except OSError as exc:
                if exc.errno not in GONE:
                    raise
                self.close()
        fd = os.open(self.path, os.O_RDONLY)
        try:
            data = os.read(fd, self._size) if self._size else read_to_end(fd, None)
        except OSError:
            os.close(fd)
            raise
        if self._fd == -1 and self._hold(fd):
            return data
        os.close(fd)
        return data

    @classmethod
    def adopt(cls, path: str, fd: int, size: int | None = None,
              share: Share | None = None) -> HeldFile:
        """A HeldFile of path from a descriptor its caller opened for it (relative to a
        directory it checked), held or else closed."""
        held = cls(path, size, share)
        if not held._hold(fd):
            os.close(fd)
        return held

    def _hold(self, fd: int) -> bool:
        global _held
        share = self._share
        if (available() if share is None else share.available()) <= 0:
            return False
        if not kernel_generated(fd):
            self._fd = -2
            return False
        _held += 1
        if share is not None:
            share.held += 1
        self._fd = fd
        return True

    def close(self) -> None:
        global _held
        if self._fd >= 0:
            os.close(self._fd)
            _held -= 1
            if self._share is not None:
                self._share.held -= 1
            self._fd = -1

    def __del__(self) -> None:
        with contextlib.suppress(OSError):
            self.close()


class HeldFiles:
    """HeldFile by path, for a collector's fixed files: procfs files, and sysfs files of
    objects that are never renamed (a path whose object is removed answers ENODEV and is
    opened again). One Share for all of them; size as HeldFile's."""

    __slots__ = ("_files", "_size", "share")

    def __init__(self, size: int | None = None, share: Share | None = None) -> None:
        self._files: dict[str, HeldFile] = {}
        self._size = size
        self.share = Share() if share is None else share

    def read(self, path: str) -> bytes:
        file = self._files.get(path)
        if file is None:
            file = self._files[path] = HeldFile(path, self._size, self.share)
        return file.read()

    def discard(self, path: str) -> None:
        file = self._files.pop(path, None)
        if file is not None:
            file.close()
