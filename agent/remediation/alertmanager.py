"""Escalations as alerts posted to Alertmanager's API v2, resolved by posting them again with
an end time."""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Mapping

import aiohttp

log = logging.getLogger("hostagent.remediation")
ALERTNAME = "HostagentRemediationFailed"


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")


def alert(rule: str, host: str, labels: Mapping[str, str], summary: str,
          details: str) -> dict[str, object]:
    """A firing alert; posting it again with an endsAt resolves it."""
    return {
        "labels": {"alertname": ALERTNAME, "severity": "critical", **labels, "rule": rule,
                   "instance": host},
        "annotations": {"summary": summary, "description": details[-4000:]},
        "startsAt": now(),
    }


async def post(url: str | None, alerts: list[dict[str, object]], timeout: float = 10.0) -> bool:
    """True when Alertmanager accepted them; failures are logged (never with the URL's
    credentials) and reported, not raised."""
    if url is None:
        log.warning("remediation escalation has nowhere to go (set remediation.alertmanager_url)")
        return False
    target = url.rstrip("/") + "/api/v2/alerts"
    try:
        async with (aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as s,
                    s.post(target, data=json.dumps(alerts),
                           headers={"Content-Type": "application/json"}) as response):
            if response.status // 100 == 2:
                return True
            log.error("Alertmanager refused the escalation",
                      extra={"kv": {"status": response.status}})
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        log.error("cannot reach Alertmanager", extra={"kv": {"error": type(exc).__name__}})
    return False
