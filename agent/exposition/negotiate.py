"""Content negotiation for /metrics: exposition format from Accept, gzip from Accept-Encoding."""

from __future__ import annotations

import functools

from agent.exposition.formats import OPENMETRICS, TEXT

_OPENMETRICS_VERSIONS = {None, "1.0.0", "0.0.1"}
_TEXT_VERSIONS = {None, "0.0.4"}


def _parse(header: str) -> list[tuple[str, dict[str, str], float]]:
    """Split an Accept-style header into (value, params, q), dropping malformed q values."""
    out = []
    for item in header.split(","):
        value, *raw_params = (part.strip() for part in item.split(";"))
        params = {}
        for raw in raw_params:
            key, _, val = raw.partition("=")
            params[key.strip().lower()] = val.strip().strip('"')
        try:
            q = float(params.pop("q", "1"))
        except ValueError:
            continue
        if value:
            out.append((value.lower(), params, q))
    return out


@functools.lru_cache(maxsize=64)
def choose_format(accept: str | None) -> str:
    """Pick the most preferred format we serve; plain text when nothing else matches."""
    best, best_q = TEXT, 0.0
    for media, params, q in _parse(accept or ""):
        version = params.get("version")
        if media == "application/openmetrics-text" and version in _OPENMETRICS_VERSIONS:
            candidate = OPENMETRICS
        elif media in ("text/plain", "text/*", "*/*") and version in _TEXT_VERSIONS:
            candidate = TEXT
        else:
            continue
        if q > best_q:
            best, best_q = candidate, q
    return best


@functools.lru_cache(maxsize=64)
def accepts_gzip(accept_encoding: str | None) -> bool:
    """An explicit gzip entry decides (gzip;q=0 refuses it); otherwise a * entry does."""
    codings = {coding: q for coding, _, q in _parse(accept_encoding or "")}
    return codings.get("gzip", codings.get("*", 0.0)) > 0
