"""Alertmanager's webhook payload (version 4), validated into what the relay needs."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


class PayloadError(ValueError):
    """The body is not an Alertmanager version 4 notification; the message says what is off."""


@dataclass(frozen=True)
class Alert:
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime | None
    ends_at: datetime | None
    generator_url: str
    fingerprint: str


@dataclass(frozen=True)
class Notification:
    receiver: str
    status: str
    group_key: str
    group_labels: dict[str, str]
    common_labels: dict[str, str]
    common_annotations: dict[str, str]
    external_url: str
    truncated_alerts: int
    alerts: list[Alert]

    def key(self) -> str:
        """Identifies this notification across Alertmanager's retries: the group, its status and
        each alert's identity and state (not endsAt, which moves while an alert fires)."""
        parts = [self.group_key, self.status]
        for alert in sorted(self.alerts, key=lambda a: (a.fingerprint, a.status)):
            parts.append(f"{alert.fingerprint}/{alert.status}/{alert.starts_at}")
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def parse_time(value: Any) -> datetime | None:
    """RFC 3339 with up to nanoseconds; Go's zero time (an unset endsAt) is None."""
    if not isinstance(value, str) or not value or value.startswith("0001-01-01"):
        return None
    text = value.replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:  # Python takes at most microseconds
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[:min(digits, 6)].ljust(6, '0')}{rest[digits:]}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise PayloadError(f"not an RFC 3339 time: {value[:40]!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _strings(value: Any, field: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise PayloadError(f"{field} must map strings to strings")
    return dict(value)


def _string(body: dict[str, Any], field: str, default: str | None = None) -> str:
    value = body.get(field, default)
    if not isinstance(value, str):
        raise PayloadError(f"{field} must be a string")
    return value


def parse(body: Any) -> Notification:
    if not isinstance(body, dict):
        raise PayloadError("the body must be a JSON object")
    if body.get("version") != "4":
        raise PayloadError(f"version must be \"4\" (Alertmanager's webhook), "
                           f"got {str(body.get('version'))[:20]!r}")
    status = _string(body, "status")
    if status not in ("firing", "resolved"):
        raise PayloadError("status must be firing or resolved")
    raw_alerts = body.get("alerts")
    if not isinstance(raw_alerts, list) or not raw_alerts:
        raise PayloadError("alerts must be a non-empty list")
    alerts = []
    for index, raw in enumerate(raw_alerts):
        if not isinstance(raw, dict):
            raise PayloadError(f"alerts[{index}] must be an object")
        alert_status = _string(raw, "status")
        if alert_status not in ("firing", "resolved"):
            raise PayloadError(f"alerts[{index}].status must be firing or resolved")
        alerts.append(Alert(
            status=alert_status,
            labels=_strings(raw.get("labels"), f"alerts[{index}].labels"),
            annotations=_strings(raw.get("annotations"), f"alerts[{index}].annotations"),
            starts_at=parse_time(raw.get("startsAt")),
            ends_at=parse_time(raw.get("endsAt")),
            generator_url=_string(raw, "generatorURL", ""),
            fingerprint=_string(raw, "fingerprint", ""),
        ))
    truncated = body.get("truncatedAlerts", 0)
    if not isinstance(truncated, int) or truncated < 0:
        raise PayloadError("truncatedAlerts must be a non-negative integer")
    return Notification(
        receiver=_string(body, "receiver", ""),
        status=status,
        group_key=_string(body, "groupKey"),
        group_labels=_strings(body.get("groupLabels"), "groupLabels"),
        common_labels=_strings(body.get("commonLabels"), "commonLabels"),
        common_annotations=_strings(body.get("commonAnnotations"), "commonAnnotations"),
        external_url=_string(body, "externalURL", ""),
        truncated_alerts=truncated,
        alerts=alerts,
    )
