"""Settings models the collector declarations share: the base every collector's settings extend,
device filters, field filters. Imports nothing of the agent, so config can build on it."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Strict(BaseModel):
    # A built model class keeps a core schema, a validator and a serializer; the root
    # configuration's validator holds every section's already, so the others are built
    # only when used on their own. Defaults of a model type are made with model_construct()
    # for that reason (tests/test_config.py checks they equal validated ones).
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


def check_regex(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from None
    return value


def flag(name: str) -> dict[str, Any]:
    """A setting's node_exporter flag name, where it is not collector.NAME.FIELD-WITH-DASHES:
    Field(..., json_schema_extra=flag("collector.cpu.info.flags-include")); "" for none."""
    return {"flag": name}


class CollectorSettings(Strict):
    enabled: bool = True
    interval: float = Field(15.0, gt=0, description="seconds between runs")
    timeout: float | None = Field(None, gt=0, description="abandon a run after this many "
                                  "seconds (default: min(10, 0.8 x interval))")

    @model_validator(mode="after")
    def _timeout_within_interval(self) -> CollectorSettings:
        if self.timeout is not None and self.timeout > self.interval:
            raise ValueError(f"timeout ({self.timeout}) must not exceed interval ({self.interval})")
        return self

    @property
    def effective_timeout(self) -> float:
        """Unset timeouts stay below the interval so a run ends before the next tick."""
        return self.timeout if self.timeout is not None else min(10.0, self.interval * 0.8)


class DeviceFilterSettings(CollectorSettings):
    """Include or exclude devices by regex (one of the two, as in node_exporter)."""

    device_include: str | None = Field(None, description="regex of devices to include")
    device_exclude: str | None = Field(None, description="regex of devices to exclude")

    _check_regex = field_validator("device_include", "device_exclude")(check_regex)

    @model_validator(mode="before")
    @classmethod
    def _include_replaces_default_exclude(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("device_include") is not None:
            data.setdefault("device_exclude", None)
        return data

    @model_validator(mode="after")
    def _one_filter(self) -> DeviceFilterSettings:
        if self.device_include is not None and self.device_exclude is not None:
            raise ValueError("device_include and device_exclude are mutually exclusive")
        return self


class FieldsSettings(CollectorSettings):
    """Collectors that export only the fields matching a regex (node_exporter's default)."""

    fields: str = Field(description="regex of fields to export")

    _check_regex = field_validator("fields")(check_regex)
