"""The relay's configuration: where it listens and, per route, which robots get the messages.
Secrets are named by file and read once at start; the model never holds them."""

from __future__ import annotations

import re
import zoneinfo
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agent.config import ConfigError, describe_error, parse_listen_address, read_yaml

DEFAULT_PORT = 9111
WECOM_URL = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"
DINGTALK_URL = "https://oapi.dingtalk.com/robot/send"
ROUTE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RateLimit(Strict):
    """Both robots allow 20 messages a minute each; more are refused with an error code."""

    messages: int = Field(20, ge=1)
    interval: float = Field(60.0, gt=0)


class RobotConfig(Strict):
    rate_limit: RateLimit = RateLimit()
    timeout: float = Field(10.0, gt=0, description="one HTTP request to the robot")


class WeComConfig(RobotConfig):
    key_file: Path
    url: str = WECOM_URL


class DingTalkConfig(RobotConfig):
    token_file: Path
    secret_file: Path | None = None  # the robot's "SEC..." signing secret, when signing is on
    url: str = DINGTALK_URL


class Mention(Strict):
    all: bool = False
    mobiles: list[str] = []
    userids: list[str] = []
    resolved: bool = Field(False, description="also mention on resolved notifications")

    @property
    def anyone(self) -> bool:
        return self.all or bool(self.mobiles or self.userids)


class Route(Strict):
    name: str
    wecom: WeComConfig | None = None
    dingtalk: DingTalkConfig | None = None
    mention: Mention = Mention()

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not ROUTE_NAME.match(value):
            raise ValueError("must be letters, digits, '_', '.' or '-' (it is a URL path part)")
        return value

    @model_validator(mode="after")
    def _some_robot(self) -> Route:
        if self.wecom is None and self.dingtalk is None:
            raise ValueError("needs a wecom or a dingtalk robot (or both)")
        return self


class RelayWeb(Strict):
    """The listener's security: the agent's exporter-toolkit web configuration file (TLS,
    client certificates, basic auth, headers), with the same meaning and the same checks."""

    config_file: Path | None = Field(None, description="exporter-toolkit web configuration file")
    auth_exempt_probes: bool = Field(False, description="/-/healthy and /-/ready without auth")


class Retry(Strict):
    initial: float = Field(1.0, gt=0, description="first backoff")
    max: float = Field(30.0, gt=0, description="longest backoff")
    deadline: float = Field(120.0, gt=0, description="give a message up after this long")


class RelayConfig(Strict):
    listen_address: str = f"127.0.0.1:{DEFAULT_PORT}"
    timezone: str = "UTC"
    template_file: Path | None = None
    response_timeout: float = Field(
        8.0, gt=0, description="a webhook waits this long for delivery, then gets 503")
    dedup_window: float = Field(
        600.0, gt=0, description="a delivered notification is not sent again within this")
    shutdown_timeout: float = Field(10.0, gt=0)
    retry: Retry = Retry()
    web: RelayWeb = RelayWeb()
    log_level: str = Field("info", pattern="^(debug|info|warning|error)$")
    routes: list[Route] = Field(min_length=1)

    @field_validator("listen_address")
    @classmethod
    def _check_address(cls, value: str) -> str:
        parse_listen_address(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _check_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("routes")
    @classmethod
    def _unique(cls, routes: list[Route]) -> list[Route]:
        names = [route.name for route in routes]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"route name {name!r} is used twice")
        return routes


def load(path: Path, overrides: dict[str, Any] | None = None) -> RelayConfig:
    """The file, with command-line overrides: "a.b" keys set b in section a."""
    data = read_yaml(path)
    for key, value in (overrides or {}).items():
        section, _, name = key.rpartition(".")
        if section:
            nested = data.get(section)
            data[section] = {**(nested if isinstance(nested, dict) else {}), name: value}
        else:
            data[key] = value
    try:
        return RelayConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([f"{path}: {describe_error(dict(e))}" for e in exc.errors()]) from None


def read_secret(path: Path, field: str) -> str:
    """A secret file's content, stripped. Problems name the field and the file, never content."""
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise ConfigError([f"{field}: cannot read {path}: {exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{field}: {path} is not UTF-8 text"]) from None
    if not text or any(c.isspace() for c in text):
        raise ConfigError([f"{field}: {path} must hold one value on one line"])
    return text
