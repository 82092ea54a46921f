"""Markdown for one notification group, from a Jinja2 template, within a robot's size limit.

A group too long for the limit shows as many alerts as fit and an "and N more" line: one
message per group, never a flood of parts.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from agent.config import ConfigError
from agent.relay.notification import Alert, Notification

# Labels every alert has, shown in the title or severity line rather than per alert.
SHOWN_ELSEWHERE = ("alertname", "severity")

DEFAULT_TEMPLATE = """\
### [{{ status | upper }}{% if status == "firing" %}:{{ firing_count }}{% endif %}] {{ title }}
{% if severity %}**Severity:** {{ severity }}
{% endif %}{% for name, value in group_labels | dictsort if name not in shown_elsewhere %}\
**{{ name }}:** {{ value }}
{% endfor %}
{% for section, items in sections %}\
#### {{ section }} ({{ items | length }})
{% for alert in items %}\
- **{{ alert.labels.alertname | default(title) }}**\
{% if alert.labels.severity and not severity %} ({{ alert.labels.severity }}){% endif %}\
{% if alert.annotations.summary %}: {{ alert.annotations.summary }}{% endif %}
{% if alert.annotations.description %}  > {{ alert.annotations.description }}
{% endif %}\
{% set labels = alert_labels(alert) %}{% if labels %}  {{ labels }}
{% endif %}\
  Started {{ alert.starts_at | localtime }}\
{% if alert.status == "resolved" and alert.ends_at %}\
, resolved {{ alert.ends_at | localtime }}{% endif %}\
{% if alert.generator_url %} · [source]({{ alert.generator_url }}){% endif %}
{% endfor %}
{% endfor %}\
{% if omitted %}*… and {{ omitted }} more*
{% endif %}\
{% if alertmanager_url %}[Alertmanager]({{ alertmanager_url }})
{% endif %}\
{% if mention %}{{ mention }}
{% endif %}"""


@dataclass(frozen=True)
class Message:
    title: str
    text: str


class Templates:
    """The markdown template (the built-in one or an operator's file) and the time zone."""

    def __init__(self, zone: tzinfo, template_file: Path | None = None) -> None:
        self._zone = zone
        env = SandboxedEnvironment(undefined=jinja2.ChainableUndefined, autoescape=False,
                                   keep_trailing_newline=True)
        env.filters["localtime"] = self._localtime
        source = DEFAULT_TEMPLATE
        if template_file is not None:
            try:
                source = template_file.read_text()
            except OSError as exc:
                raise ConfigError([f"template_file: cannot read {template_file}: "
                                   f"{exc.strerror}"]) from None
        try:
            self._template = env.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise ConfigError([f"template_file: {template_file}: line {exc.lineno}: "
                               f"{exc.message}"]) from None

    def _localtime(self, value: datetime | None) -> str:
        if value is None:
            return "unknown"
        return value.astimezone(self._zone).strftime("%Y-%m-%d %H:%M:%S %Z")

    def render(self, notification: Notification, limit: int, mention: str = "") -> Message:
        """The largest rendering, showing the first alerts (firing before resolved), that fits
        in limit bytes of UTF-8; the rest are counted in the "and N more" line."""
        ordered = ([a for a in notification.alerts if a.status == "firing"]
                   + [a for a in notification.alerts if a.status == "resolved"])
        title = self.title(notification)
        low, high = 0, len(ordered)
        text = self._render(notification, ordered, high, title, mention)
        if len(text.encode()) <= limit:
            return Message(title, text)
        best = None
        while low <= high:  # binary search on the number of alerts shown
            middle = (low + high) // 2
            candidate = self._render(notification, ordered, middle, title, mention)
            if len(candidate.encode()) <= limit:
                best, low = candidate, middle + 1
            else:
                high = middle - 1
        if best is None:  # even without alerts it is too long: cut at a character boundary
            cut = self._render(notification, ordered, 0, title, mention).encode()
            best = cut[:limit - 4].decode(errors="ignore") + "\n…\n"
        return Message(title, best)

    def title(self, notification: Notification) -> str:
        name = (notification.group_labels.get("alertname")
                or notification.common_labels.get("alertname") or notification.receiver)
        firing = sum(a.status == "firing" for a in notification.alerts)
        count = f":{firing}" if notification.status == "firing" else ""
        return f"[{notification.status.upper()}{count}] {name}"

    def _render(self, notification: Notification, ordered: list[Alert], shown: int,
                title: str, mention: str) -> str:
        visible = ordered[:shown]
        firing = [a for a in visible if a.status == "firing"]
        resolved = [a for a in visible if a.status == "resolved"]
        sections = [(name, items) for name, items in (("Firing", firing),
                                                      ("Resolved", resolved)) if items]
        common = notification.common_labels

        def alert_labels(alert: Alert) -> str:
            # Its labels but those already in the heading (the group's, alertname, severity).
            return ", ".join(f"{k}={v}" for k, v in sorted(alert.labels.items())
                             if k not in SHOWN_ELSEWHERE and k not in notification.group_labels)

        context: dict[str, Any] = {
            "status": notification.status,
            "title": (notification.group_labels.get("alertname")
                      or common.get("alertname") or notification.receiver),
            "message_title": title,
            "severity": common.get("severity", ""),
            "group_labels": notification.group_labels,
            "common_labels": common,
            "common_annotations": notification.common_annotations,
            "shown_elsewhere": SHOWN_ELSEWHERE,
            "firing_count": sum(a.status == "firing" for a in notification.alerts),
            "sections": sections,
            "alerts": visible,
            "omitted": len(ordered) - shown + notification.truncated_alerts,
            "alert_labels": alert_labels,
            "alertmanager_url": alertmanager_link(notification),
            "receiver": notification.receiver,
            "mention": mention,
        }
        return self._template.render(context)


def alertmanager_link(notification: Notification) -> str:
    if not notification.external_url:
        return ""
    receiver = urllib.parse.quote(notification.receiver, safe="")
    return f"{notification.external_url.rstrip('/')}/#/alerts?receiver={receiver}"
