"""Targets: the inline list plus Prometheus file_sd files (re-read when they change), sharded.

A target's name is the string as written (`db1`, `db1:2222`, `deploy@db1:2222`): it is the
`target` label, the `target` parameter of /probe and what the shard hash is taken of.
"""

from __future__ import annotations

import copy
import getpass
import glob
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import yaml

from agent.addresses import split_address
from agent.logs import kv

if TYPE_CHECKING:
    from agent.config import SshConfig

log = logging.getLogger("hostagent.ssh")

KEY_FILE_LABEL = "__ssh_key_file__"
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


@dataclass(frozen=True)
class Target:
    name: str
    host: str
    port: int
    user: str
    key_files: tuple[Path, ...]
    labels: tuple[tuple[str, str], ...]  # exported with every series, sorted by name


def hashmod(value: str, modulus: int) -> int:
    """Prometheus' relabel `hashmod`: the MD5 of the value, its last 8 bytes read as a
    big-endian unsigned 64-bit integer, modulo n. Agents sharding one list with "0/n" to
    "n-1/n" split it with no overlap and no gap, and agree with Prometheus relabeling."""
    return int.from_bytes(hashlib.md5(value.encode()).digest()[8:], "big") % modulus


def in_shard(name: str, shard: str | None) -> bool:
    if shard is None:
        return True
    index, _, count = shard.partition("/")
    return hashmod(name, int(count)) == int(index)


def make_target(name: str, labels: Mapping[str, str], defaults: SshConfig,
                user: str | None = None, port: int | None = None,
                key_file: Path | None = None) -> Target:
    """Labels starting with '__' are not exported; `__ssh_key_file__` selects the key."""
    addr_user, host, addr_port = split_address(name)
    if key_file is None and labels.get(KEY_FILE_LABEL):
        key_file = Path(labels[KEY_FILE_LABEL])
    keys = (key_file,) if key_file is not None else tuple(defaults.key_files)
    return Target(
        name=name, host=host,
        port=port or addr_port or defaults.port,
        user=user or addr_user or defaults.user or getpass.getuser(),
        key_files=tuple(k.expanduser() for k in keys),
        labels=tuple(sorted((k, v) for k, v in labels.items() if not k.startswith("__"))))


def parse_target_groups(text: str, json_format: bool) -> list[tuple[list[str], dict[str, str]]]:
    """file_sd content: a list of {targets: [...], labels: {...}} groups."""
    data: Any = json.loads(text) if json_format else yaml.safe_load(text)
    if data is None:
        return []
    if not isinstance(data, list):
        raise ValueError("expected a list of target groups")
    groups = []
    for number, group in enumerate(data, 1):
        if not isinstance(group, dict) or not isinstance(group.get("targets", []), list):
            raise ValueError(f"group {number}: expected {{targets: [...], labels: {{...}}}}")
        unknown = set(group) - {"targets", "labels"}
        if unknown:
            raise ValueError(f"group {number}: unknown key {sorted(unknown)[0]!r}")
        labels = group.get("labels") or {}
        if not isinstance(labels, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
            raise ValueError(f"group {number}: labels must map strings to strings")
        for label in labels:
            # `__`-prefixed labels are settings (as in Prometheus), never exposed.
            if not label.startswith("__") and (label == "target"
                                               or not LABEL_NAME.fullmatch(label)):
                raise ValueError(f"group {number}: invalid label name {label!r} "
                                 "(target is reserved)")
        names = group.get("targets") or []
        if not all(isinstance(name, str) for name in names):
            raise ValueError(f"group {number}: targets must be strings")
        for name in names:
            split_address(name)
        groups.append((names, labels))
    return groups


def read_target_groups(path: Path) -> list[tuple[list[str], dict[str, str]]]:
    """A file_sd file (JSON when it ends in .json, YAML otherwise). Raises OSError or
    ValueError (yaml.YAMLError included) with what is wrong."""
    try:
        return parse_target_groups(path.read_text(), path.suffix == ".json")
    except yaml.YAMLError as exc:
        raise ValueError(f"invalid YAML: {exc}") from None


def _version(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


class TargetSource:
    """The configured targets. Files are read again when they change (mtime, size, inode); a
    file that cannot be read or parsed keeps its previous targets, as in Prometheus. The
    first occurrence of a name wins. Blocking: call from a thread."""

    def __init__(self, config: SshConfig) -> None:
        self._config = config
        self._files: dict[str, tuple[tuple[int, int, int] | None, list[Target]]] = {}
        self._loaded = False
        self.targets: list[Target] = []

    def refresh(self) -> bool:
        """Re-read what changed; True when the target list changed."""
        config = self._config
        files = {}
        for pattern in config.file_sd:
            expanded = os.path.expanduser(pattern)
            for path in sorted(glob.glob(expanded)) if glob.has_magic(expanded) else [expanded]:
                files[path] = self._read(path)
        if self._loaded and files == self._files:
            return False
        self._files, self._loaded = files, True
        inline = [make_target(t.target, t.labels, config, t.user, t.port, t.key_file)
                  for t in config.targets]
        targets = _first_of_each(inline + [t for _, found in files.values() for t in found])
        targets = [t for t in targets if in_shard(t.name, config.shard)]
        changed = targets != self.targets
        self.targets = targets
        return changed

    def _read(self, path: str) -> tuple[tuple[int, int, int] | None, list[Target]]:
        version = _version(path)
        previous = self._files.get(path)
        if previous is not None and previous[0] == version:
            return previous
        try:
            groups = read_target_groups(Path(path))
            found = [make_target(name, labels, self._config)
                     for names, labels in groups for name in names]
        except (OSError, ValueError) as exc:
            log.error("cannot read file_sd file, keeping its previous targets",
                      extra=kv(path=path, err=exc))
            return version, previous[1] if previous is not None else []
        log.info("file_sd file read", extra=kv(path=path, targets=len(found)))
        return version, found


def _first_of_each(targets: Iterable[Target]) -> list[Target]:
    seen: dict[str, Target] = {}
    for target in targets:
        if target.name in seen:
            if seen[target.name] != target:
                log.warning("duplicate target, keeping the first", extra=kv(target=target.name))
            continue
        seen[target.name] = target
    return list(seen.values())


@dataclass(frozen=True)
class Change:
    """A prepared reconfiguration of the SSH worker: its config and the targets read for it."""

    config: SshConfig
    source: TargetSource

    def plain(self) -> Change:
        """The change as it crosses to the worker process: its config (the source's too)
        as plain(config), with the node module's filters, so that process never loads the
        configuration's and the collectors' settings models."""
        from agent.ssh.remote_node import NodeFilters

        config: Any = plain(self.config)
        config.node_filters = NodeFilters.defaults()
        source = copy.copy(self.source)
        source._config = config
        return Change(config, source)


def plain(value: Any) -> Any:
    """A settings model as nested namespaces with the same attributes (lists, dicts and
    values kept as they are)."""
    fields = getattr(type(value), "model_fields", None)
    if isinstance(fields, dict):
        return SimpleNamespace(**{name: plain(getattr(value, name)) for name in fields})
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    return value
