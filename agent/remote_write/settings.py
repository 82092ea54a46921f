"""The `remote_write` configuration section. Imports nothing from the agent, so the
configuration model can hold it without loading the push machinery."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)  # as Strict


def _check_label_names(names: list[str]) -> list[str]:
    for name in names:
        if not LABEL_NAME.match(name):
            raise ValueError(f"invalid label name {name!r}")
    return names


class RelabelConfig(_Strict):
    """One write_relabel_configs step, with Prometheus's semantics for these actions."""

    action: Literal["replace", "keep", "drop", "labeldrop", "labelkeep"] = "replace"
    source_labels: list[str] = []
    separator: str = ";"
    regex: str = "(.*)"
    target_label: str | None = None
    replacement: str = "$1"

    @field_validator("source_labels")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        return _check_label_names(value)

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regex: {exc}") from None
        return value

    @model_validator(mode="after")
    def _target(self) -> RelabelConfig:
        if self.action == "replace":
            if not self.target_label:
                raise ValueError("replace needs target_label")
            # $1 or ${1} style references may form the name; only a literal name is checked.
            if "$" not in self.target_label and not LABEL_NAME.match(self.target_label):
                raise ValueError(f"invalid target_label {self.target_label!r}")
        elif self.target_label is not None:
            raise ValueError(f"{self.action} takes no target_label")
        return self


class BasicAuth(_Strict):
    username: str = Field(min_length=1)
    password: str | None = Field(None, repr=False)
    password_file: Path | None = None

    @model_validator(mode="after")
    def _one_password(self) -> BasicAuth:
        if self.password is not None and self.password_file is not None:
            raise ValueError("password and password_file are mutually exclusive")
        return self


class TlsConfig(_Strict):
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str | None = None
    insecure_skip_verify: bool = False

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class QueueConfig(_Strict):
    shards: int = Field(1, ge=1, le=64, description="parallel senders; a series keeps to one")
    max_samples_per_send: int = Field(2000, ge=1, le=100_000)
    batch_send_deadline: float = Field(5.0, gt=0, description="longest a sample waits for a "
                                       "fuller batch")
    min_backoff: float = Field(0.03, gt=0)
    max_backoff: float = Field(5.0, gt=0)
    retry_on_http_429: bool = True

    @model_validator(mode="after")
    def _backoff_order(self) -> QueueConfig:
        if self.min_backoff > self.max_backoff:
            raise ValueError(f"min_backoff ({self.min_backoff}) must not exceed max_backoff "
                             f"({self.max_backoff})")
        return self


class WalConfig(_Strict):
    max_bytes: int = Field(256 << 20, ge=1 << 16, description="disk budget for this queue")
    segment_bytes: int = Field(4 << 20, ge=1 << 12, description="segment file size")
    fsync: Literal["always", "interval", "never"] = "interval"
    fsync_interval: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _segments_fit(self) -> WalConfig:
        if self.segment_bytes * 2 > self.max_bytes:
            raise ValueError(f"max_bytes ({self.max_bytes}) must hold at least two segments "
                             f"of segment_bytes ({self.segment_bytes})")
        return self


class MetadataConfig(_Strict):
    send: bool = True
    send_interval: float = Field(60.0, gt=0)


class EndpointConfig(_Strict):
    url: str
    name: str | None = Field(None, description="the remote_name label and the queue's "
                             "directory; default: derived from the URL")
    remote_timeout: float = Field(30.0, gt=0)
    headers: dict[str, str] = {}
    basic_auth: BasicAuth | None = None
    bearer_token_file: Path | None = None
    tls_config: TlsConfig = TlsConfig.model_construct()
    write_relabel_configs: list[RelabelConfig] = []
    queue_config: QueueConfig = QueueConfig.model_construct()
    wal: WalConfig = WalConfig.model_construct()
    metadata_config: MetadataConfig = MetadataConfig.model_construct()

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http:// or https:// URL with a host")
        return value

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", value):
            raise ValueError("use letters, digits, '_', '.' and '-' only (it names a directory)")
        return value

    @field_validator("headers")
    @classmethod
    def _own_headers(cls, value: dict[str, str]) -> dict[str, str]:
        reserved = {"content-type", "content-encoding", "content-length", "user-agent",
                    "x-prometheus-remote-write-version", "authorization", "host"}
        for key in value:
            if key.lower() in reserved:
                raise ValueError(f"header {key!r} is set by the agent")
        return value

    @model_validator(mode="after")
    def _one_auth(self) -> EndpointConfig:
        if self.basic_auth is not None and self.bearer_token_file is not None:
            raise ValueError("basic_auth and bearer_token_file are mutually exclusive")
        return self


class RemoteWriteConfig(_Strict):
    external_labels: dict[str, str] = Field(
        {}, description="added to every series; instance and job default to what a scrape "
        "would give: HOST:PORT of web.listen_address and hostagent")
    directory: Path = Field(Path("/var/lib/hostagent/remote_write"),
                            description="one sub-directory per endpoint holds its queue")
    resend_interval: float = Field(60.0, gt=0, le=240, description="a snapshot not "
                                   "republished since is sent again so its series stay fresh")
    degraded_after: float = Field(300.0, gt=0, description="/health reports degraded when a "
                                  "queue has failed to deliver for this long")
    endpoints: list[EndpointConfig] = []

    @field_validator("external_labels")
    @classmethod
    def _label_names(cls, value: dict[str, str]) -> dict[str, str]:
        _check_label_names(list(value))
        if "__name__" in value:
            raise ValueError("__name__ cannot be an external label")
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> RemoteWriteConfig:
        names = [endpoint_name(e) for e in self.endpoints]
        duplicates = sorted(n for n, count in Counter(names).items() if count > 1)
        if duplicates:
            raise ValueError(f"duplicate endpoint names: {', '.join(duplicates)} (set `name`)")
        return self


def endpoint_name(endpoint: EndpointConfig) -> str:
    """The configured name, else host_port_path of the URL (credentials left out)."""
    if endpoint.name:
        return endpoint.name
    parts = urlsplit(endpoint.url)
    raw = f"{parts.hostname}_{parts.port or ''}{parts.path}"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", raw).strip("_")


def redacted_url(url: str) -> str:
    """The URL without user:password@, for labels, logs and /health."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return parts._replace(netloc=netloc).geturl()
