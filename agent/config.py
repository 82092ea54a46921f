"""The configuration model: one validated object, built from YAML plus flag overrides."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from agent.addresses import split_address
from agent.collectors.catalog import ALIASES, DECLARATIONS
from agent.collectors.common import LABEL_NAME
from agent.collectors.settings import CollectorSettings, Strict, check_regex
from agent.remediation.settings import RemediationConfig
from agent.remote_write.settings import RemoteWriteConfig

DEFAULT_PORT = 9110


class ConfigError(Exception):
    """A user-caused configuration problem; each line names a field path and what is wrong."""

    def __init__(self, problems: list[str], shown: list[str] | None = None) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
        # What the command line prints: the same, each prefixed with the file it came from.
        self.shown = problems if shown is None else shown


def parse_listen_address(value: str) -> tuple[str | None, int]:
    """'HOST:PORT', '[::1]:PORT' or ':PORT' (all interfaces) -> (host or None, port)."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"expected HOST:PORT with a port 0-65535, got {value!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"an IPv6 host needs brackets, as in [::1]:{port_text}, got {value!r}")
    return (host or None), int(port_text)


class WebConfig(Strict):
    listen_address: str = f":{DEFAULT_PORT}"
    max_requests: int = Field(40, ge=0, description="concurrent /metrics requests; 0 = no limit")
    shutdown_timeout: float = Field(5.0, gt=0, description="grace period for in-flight requests")
    write_timeout: float = Field(30.0, gt=0, description="cut off a client that reads too slowly")
    enable_lifecycle: bool = Field(False, description="allow POST /-/reload")
    config_file: Path | None = Field(None, description="exporter-toolkit web configuration file")
    auth_exempt_probes: bool = Field(False, description="/-/healthy and /-/ready without auth")
    read_timeout: float = Field(10.0, gt=0, description="deadline for a request's line and "
                                "headers, from the connection or the request's first byte")
    idle_timeout: float = Field(300.0, gt=0, description="how long an idle keep-alive "
                                "connection stays open between requests")
    max_header_size: int = Field(8190, ge=1024, le=1 << 20,
                                 description="longest request line or header field, bytes")
    max_body_size: int = Field(65536, ge=0, description="largest request body, bytes")
    telemetry_path: str = Field("/metrics", pattern=r"^/[^?#]*$",
                                description="path under which the metrics are served")
    disable_exporter_metrics: bool = Field(False, description="leave out the agent's "
                                           "process_* and python_* series")
    status_history_step: float = Field(10.0, gt=0, le=3600, description="least seconds "
                                       "between the status page's chart points, taken as "
                                       "collections complete (it keeps 360)")

    @field_validator("listen_address")
    @classmethod
    def _check_address(cls, value: str) -> str:
        parse_listen_address(value)
        return value


def _off_by_default(model: type[CollectorSettings]) -> type[CollectorSettings]:
    """model with `enabled` false unless configured: one class per settings model, shared by
    the collectors off by default (a class per collector cost ~1.3 MB of RSS). Bound in this
    module, so that a configuration pickles."""
    name = f"{model.__name__}OffByDefault"
    if name not in globals():
        globals()[name] = create_model(
            name, __base__=model, __module__=__name__,
            enabled=(bool, Field(False, description="run this collector")))
    off: type[CollectorSettings] = globals()[name]
    return off


def _collectors_model() -> type[BaseModel]:
    """One field per declared collector, its default enabled as node_exporter's."""
    fields: dict[str, Any] = {}
    for declaration in DECLARATIONS:
        model = declaration.settings if declaration.default else \
            _off_by_default(declaration.settings)
        fields[declaration.name] = (model, model.model_construct())
    return create_model("CollectorsModel", __base__=Strict, **fields)


class CollectorsConfig(_collectors_model()):  # type: ignore[misc]
    """Settings per collector, keyed by node_exporter's collector names. Older hostagent names
    (ALIASES) are accepted and stand for the collectors they cover."""

    @model_validator(mode="before")
    @classmethod
    def _expand_aliases(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        out = {key: value for key, value in data.items() if key not in ALIASES}
        for alias, names in ALIASES.items():
            if not isinstance(data.get(alias), dict):
                if alias in data:
                    out[alias] = data[alias]  # left for the model to reject with its path
                continue
            for name in names:  # what is given under the collector's own name wins
                given = out.get(name)
                out[name] = {**data[alias], **given} if isinstance(given, dict) else data[alias]
        return out

    def get(self, name: str) -> CollectorSettings:
        settings: CollectorSettings = getattr(self, name)
        return settings


class SchedulerConfig(Strict):
    jitter: float = Field(0.1, ge=0, le=0.5, description="random delay per tick / interval")
    workers: int = Field(4, ge=1, le=64, description="threads running blocking collector work")


class PathsConfig(Strict):
    procfs: Path = Path("/proc")
    sysfs: Path = Path("/sys")
    rootfs: Path = Path("/")
    udev_data: Path = Field(Path("/run/udev/data"), description="udev's database of devices")


class LoggingConfig(Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["logfmt", "json"] = "logfmt"


class DebugConfig(Strict):
    enabled: bool = Field(False, description="serve the /debug/* profiling endpoints")
    tracemalloc: bool = Field(False, description="trace allocations from start, for /debug/heap")


def _label_names(labels: dict[str, str]) -> dict[str, str]:
    for name in labels:
        if not LABEL_NAME.match(name) or name == "target":
            raise ValueError(f"invalid label name {name!r} (target is reserved)")
    return labels


def _ssh_address(value: str) -> str:
    split_address(value)
    return value


class SshTargetConfig(Strict):
    """One inline target; user, port and key_file override the section's defaults."""

    target: str = Field(description="host, host:port or user@host:port; the `target` label")
    user: str | None = None
    port: int | None = Field(None, ge=1, le=65535)
    key_file: Path | None = None
    labels: dict[str, str] = {}

    _check_target = field_validator("target")(_ssh_address)
    _check_labels = field_validator("labels")(_label_names)


class SshCheck(Strict):
    name: str = Field(min_length=1)
    command: str = Field(min_length=1)
    expect_status: int = Field(0, ge=0, le=255)
    regex: str | None = Field(None, description="must match the command's standard output")

    _check_regex = field_validator("regex")(check_regex)


class SshModuleSettings(Strict):
    enabled: bool = True
    interval: float = Field(30.0, gt=0)


class SshModulesConfig(Strict):
    login: SshModuleSettings = SshModuleSettings.model_construct()
    checks: SshModuleSettings = SshModuleSettings.model_construct(interval=60.0)
    node: SshModuleSettings = SshModuleSettings.model_construct(enabled=False, interval=60.0)

    @model_validator(mode="after")
    def _one_enabled(self) -> SshModulesConfig:
        if not (self.login.enabled or self.checks.enabled or self.node.enabled):
            raise ValueError("enable at least one module")
        return self


class SshConfig(Strict):
    enabled: bool = False
    targets: list[SshTargetConfig] = []
    file_sd: list[str] = Field([], description="file_sd JSON/YAML files, * globs allowed")
    file_sd_refresh_interval: float = Field(10.0, gt=0)
    shard: str | None = Field(None, description='"i/n": keep targets whose hashmod n is i')
    user: str | None = Field(None, description="login name; default: the agent's user")
    port: int = Field(22, ge=1, le=65535)
    key_files: list[Path] = []
    agent: bool = Field(False, description="also offer the keys of the ssh-agent at "
                                           "$SSH_AUTH_SOCK")
    known_hosts: Path = Path("~/.ssh/known_hosts")
    insecure_ignore_host_keys: bool = False
    max_in_flight: int = Field(64, ge=1, description="targets probed at once")
    max_handshakes: int = Field(16, ge=1, description="connections being set up at once "
                                "(at most max_in_flight)")
    connect_timeout: float = Field(5.0, gt=0)
    login_timeout: float = Field(10.0, gt=0)
    command_timeout: float = Field(10.0, gt=0)
    reuse_connections: bool = True
    keepalive_interval: float = Field(30.0, ge=0, description="0: no keepalives")
    checks: list[SshCheck] = []
    modules: SshModulesConfig = SshModulesConfig.model_construct()
    node_on_metrics: bool = Field(False, description="also serve the node module's series on "
                                  "/metrics, with a target label (default: only on /probe)")

    @field_validator("targets", mode="before")
    @classmethod
    def _strings_are_targets(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"target": item} if isinstance(item, str) else item for item in value]
        return value

    @field_validator("shard")
    @classmethod
    def _check_shard(cls, value: str | None) -> str | None:
        if value is not None:
            index, sep, count = value.partition("/")
            if not (sep and index.isdigit() and count.isdigit() and int(index) < int(count)):
                raise ValueError(f'expected "i/n" with 0 <= i < n, got {value!r}')
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SshConfig:
        for kind, names in (("target", [t.target for t in self.targets]),
                            ("check", [c.name for c in self.checks])):
            duplicates = sorted(n for n, count in Counter(names).items() if count > 1)
            if duplicates:
                raise ValueError(f"duplicate {kind} names: {', '.join(duplicates)}")
        return self


class Config(Strict):
    model_config = Strict.model_config | {"defer_build": False}  # the one validator built

    web: WebConfig = WebConfig.model_construct()
    collectors: CollectorsConfig = CollectorsConfig.model_construct()
    scheduler: SchedulerConfig = SchedulerConfig.model_construct()
    paths: PathsConfig = PathsConfig.model_construct()
    logging: LoggingConfig = LoggingConfig.model_construct()
    debug: DebugConfig = DebugConfig.model_construct()
    ssh: SshConfig = SshConfig.model_construct()
    remediation: RemediationConfig = RemediationConfig.model_construct()
    remote_write: RemoteWriteConfig = RemoteWriteConfig.model_construct()


def describe_error(error: dict[str, Any]) -> str:
    path = ".".join(str(part) for part in error["loc"]) or "config"
    kind = error["type"]
    if kind == "extra_forbidden":
        message = "unknown field"
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        # Not pydantic's text, which names an internal class; never the value (a secret?).
        message = f"must be a mapping of fields, not {_kind_of(error.get('input'))}"
    elif kind == "missing":
        message = "required field is missing"
    else:
        message = error["msg"].removeprefix("Value error, ")
        if message.startswith("Input should"):
            message = "must" + message.removeprefix("Input should")
    return f"{path}: {message}"


def _kind_of(value: object) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "empty" if value is None else type(value).__name__


def _given(overrides: dict[str, Any], loc: tuple[Any, ...]) -> bool:
    """Whether a flag set this field (or the part of the config holding it)."""
    node: Any = overrides
    for part in loc:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return bool(loc)


def build(data: dict[str, Any]) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([describe_error(dict(e)) for e in exc.errors()]) from None


def read_yaml(path: Path) -> dict[str, Any]:
    import yaml  # here: an agent run on flags alone never loads the YAML parser (~1 MB)

    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        # Never the exception itself: it carries the whole file, password hashes and all.
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError([f"{path}: not UTF-8: byte 0x{raw[exc.start]:02x} at line {line}"]
                          ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = ""
        if mark is not None:
            lines = text.splitlines() or [""]
            if mark.line >= len(lines):  # the parser's mark is past the last line
                where = f" at the end of the file (line {len(lines)})"
            else:
                where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError([f"{path}: invalid YAML{where}: {problem}"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: the top level must be a mapping, got {type(data).__name__}"])
    return data


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge overrides (from flags) into base (from the file)."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


FlagNamer = Callable[[str], str | None]  # config field path -> the flag that sets it


def load(path: Path | None, overrides: dict[str, Any] | None = None,
         flag_for: FlagNamer = lambda path: None) -> Config:
    """A problem names where the bad value came from: the flag typed (flag_for names it; the
    command line passes agent.flags.flag_for), or the file."""
    data = read_yaml(path) if path is not None else {}
    try:
        return Config.model_validate(merge(data, overrides or {}))
    except ValidationError as exc:
        problems, shown = [], []
        for error in exc.errors():
            loc = tuple(error["loc"])
            text = describe_error(dict(error))
            flag = flag_for(".".join(map(str, loc))) if _given(overrides or {}, loc) else None
            if flag is not None:
                text = f"--{flag}: {text.partition(': ')[2]}"
            problems.append(text)
            shown.append(text if flag is not None or path is None else f"{path}: {text}")
        raise ConfigError(problems, shown) from None


@dataclass(frozen=True)
class ConfigSource:
    """Where the running config came from, so a reload re-reads the file under the same flags."""

    path: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    flag_for: FlagNamer = field(default=lambda path: None, compare=False)

    def load(self) -> Config:
        return load(self.path, self.overrides, self.flag_for)
