"""The agent's command-line flags, under node_exporter's names, derived from the configuration
model and the collector declarations: an existing node_exporter ExecStart line runs unchanged,
and a flag of a collector hostagent does not have is an error naming it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo

from agent.collectors.catalog import ALIASES, BY_NAME, DECLARATIONS
from agent.config import Config

# Flag -> (config path, help). Values are validated by the configuration model.
GLOBAL_FLAGS: dict[str, tuple[str, str]] = {
    "web.listen-address": ("web.listen_address", "address to listen on, HOST:PORT"),
    "web.telemetry-path": ("web.telemetry_path", "path under which to expose metrics"),
    "web.max-requests": ("web.max_requests", "concurrent /metrics requests before 503 "
                                             "(0: no limit)"),
    "web.config.file": ("web.config_file", "exporter-toolkit web configuration file: TLS, "
                                           "basic auth, headers"),
    "log.level": ("logging.level", "debug, info, warning or error"),
    "log.format": ("logging.format", "logfmt or json"),
    "path.procfs": ("paths.procfs", "procfs mount point"),
    "path.sysfs": ("paths.sysfs", "sysfs mount point"),
    "path.rootfs": ("paths.rootfs", "rootfs mount point"),
    "path.udev.data": ("paths.udev_data", "udev data path"),
}
GLOBAL_SWITCHES: dict[str, tuple[str, str]] = {
    "web.disable-exporter-metrics": (
        "web.disable_exporter_metrics",
        "leave out the agent's process_* and python_* series"),
}


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _default_of(config: Any, path: str) -> Any:
    for part in path.split("."):
        config = getattr(config, part)
    return config


def _field_of(path: str) -> FieldInfo:
    model: Any = Config
    *parents, leaf = path.split(".")
    for part in parents:
        model = model.model_fields[part].annotation
    info: FieldInfo = model.model_fields[leaf]
    return info


def _value_type(info: FieldInfo) -> Any:
    """int and float settings are converted by argparse, so a bad value names its flag;
    the rest (strings, paths, regexes) are checked by the configuration model."""
    annotation = info.annotation
    for kind in (int, float):
        if annotation is kind or annotation == (kind | None):
            return kind
    return None


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def setting_flag(collector: str, field: str, info: FieldInfo) -> str | None:
    """The setting's flag name; None for settings only the file can hold (lists)."""
    extra = info.json_schema_extra
    if isinstance(extra, dict) and isinstance(extra.get("flag"), str):
        return str(extra["flag"]) or None
    return f"collector.{collector}.{field.replace('_', '-')}"


def _switch(group: Any, flag: str, dest: str, help_text: str) -> None:
    """--flag, --flag=false and --no-flag, as kingpin's boolean flags."""
    group.add_argument(f"--{flag}", dest=dest, nargs="?", const=True, type=_bool,
                       metavar="BOOL", help=help_text)
    group.add_argument(f"--no-{flag}", dest=dest, action="store_const", const=False,
                       help=argparse.SUPPRESS)


def add_runtime_flags(parser: argparse.ArgumentParser) -> None:
    defaults = Config()
    parser.add_argument("--config", type=Path, metavar="FILE", help="YAML configuration file")
    for flag, (path, help_text) in GLOBAL_FLAGS.items():
        parser.add_argument(f"--{flag}", dest=f"set:{path}", metavar="VALUE",
                            type=_value_type(_field_of(path)),
                            help=f"{help_text} (default: {_show(_default_of(defaults, path))})")
    for flag, (path, help_text) in GLOBAL_SWITCHES.items():
        _switch(parser, flag, f"set:{path}", f"{help_text} (default: false)")
    parser.add_argument("--collector.disable-defaults", dest="disable_defaults",
                        action="store_true",
                        help="disable every collector not enabled by a --collector.NAME flag")
    for declaration in DECLARATIONS:
        name = declaration.name
        settings = defaults.collectors.get(name)
        state = "enabled" if declaration.default else "disabled"
        group = parser.add_argument_group(
            f"collector {name} (default: {state})", declaration.help or None)
        _switch(group, f"collector.{name}", f"enable:{name}",
                f"enable the {name} collector (--no-collector.{name} disables it)")
        for field, info in type(settings).model_fields.items():
            if field == "enabled":
                continue
            setting = setting_flag(name, field, info)
            if setting is None:
                continue
            dest = f"set:collectors.{name}.{field}"
            help_text = f"{info.description or field} (default: {_show(getattr(settings, field))})"
            if info.annotation is bool:
                _switch(group, setting, dest, help_text)
            elif info.annotation == list[str]:  # repeatable, as kingpin's Strings()
                group.add_argument(f"--{setting}", dest=dest, metavar="VALUE",
                                   action="append", help=help_text)
            else:
                group.add_argument(f"--{setting}", dest=dest, metavar="VALUE",
                                   type=_value_type(info), help=help_text)
    for alias, names in ALIASES.items():
        _switch(parser, f"collector.{alias}", f"enable:{alias}",
                f"the same as the collectors {', '.join(names)}")


def flag_for(path: str) -> str | None:
    """The flag that sets a config field (`collectors.cpu.interval`), if one does."""
    for table in (GLOBAL_FLAGS, GLOBAL_SWITCHES):
        for flag, (field_path, _) in table.items():
            if field_path == path:
                return flag
    parts = path.split(".")
    if len(parts) == 3 and parts[0] == "collectors":
        name, field = parts[1], parts[2]
        if field == "enabled":
            return f"collector.{name}"
        info = type(Config().collectors.get(name)).model_fields.get(field) \
            if name in BY_NAME else None
        return None if info is None else setting_flag(name, field, info)
    return None


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Flags that were given, as a nested dict merged over the file's content."""
    out: dict[str, Any] = {}

    def put(path: str, value: Any) -> None:
        *parents, leaf = path.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value

    for dest, value in vars(args).items():
        if dest.startswith("set:") and value is not None:
            put(dest.removeprefix("set:"), value)
    enabled: dict[str, bool] = {}
    for alias, names in ALIASES.items():
        chosen = getattr(args, f"enable:{alias}", None)
        if chosen is not None:
            enabled.update(dict.fromkeys(names, chosen))
    for declaration in DECLARATIONS:
        chosen = getattr(args, f"enable:{declaration.name}", None)
        if chosen is not None:
            enabled[declaration.name] = chosen
        elif args.disable_defaults and declaration.name not in enabled:
            enabled[declaration.name] = False
    for name, chosen in enabled.items():
        put(f"collectors.{name}.enabled", chosen)
    return out
