"""The two robot APIs: the request each wants for a message and how to read its answer.

Both answer HTTP 200 with `{"errcode": N, "errmsg": "..."}`; only errcode 0 is a delivery.
Their URLs carry the credential (WeCom `key`, DingTalk `access_token` and `sign`), so a URL is
never logged or put into an error: Redactor scrubs every text that leaves this module.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
import urllib.parse
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from agent.relay.config import Mention
from agent.relay.message import Message

WECOM_MARKDOWN_LIMIT = 4096  # bytes of markdown.content
WECOM_TEXT_LIMIT = 2048  # bytes of text.content
DINGTALK_MARKDOWN_LIMIT = 20000  # bytes of markdown.text
# "api freq out of limit" (WeCom); "send too fast, exceed 20 times per minute" (DingTalk);
# -1 "system busy" on both: worth another try after a pause.
WECOM_TRANSIENT = frozenset({45009, -1})
DINGTALK_TRANSIENT = frozenset({130101, 130102, -1})


class Verdict(Enum):
    OK = "ok"
    RATE_LIMITED = "rate_limited"  # the robot's own limit: retry later
    TRANSIENT = "transient"  # transport error, HTTP 5xx, system busy: retry later
    REJECTED = "rejected"  # any other errcode or HTTP 4xx: retrying cannot help


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    detail: str  # for logs: errcode and errmsg, or the HTTP status, already redacted
    errcode: int | None = None


class Redactor:
    """Removes secrets and URL query strings from text meant for logs and errors."""

    QUERY = re.compile(r"\?[^\s'\"<>]*")

    def __init__(self, secrets: list[str]) -> None:
        # Longest first, so a secret containing another is removed whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        text = self.QUERY.sub("?<redacted>", text)
        for secret in self._secrets:
            text = text.replace(secret, "<secret>")
            text = text.replace(urllib.parse.quote_plus(secret), "<secret>")
        return text


def verdict_from_body(status: int, body: Any, transient: frozenset[int]) -> Outcome:
    if status >= 500 or status == 429:
        return Outcome(Verdict.TRANSIENT, f"HTTP {status}")
    if status != 200:
        return Outcome(Verdict.REJECTED, f"HTTP {status}")
    if not isinstance(body, dict) or not isinstance(body.get("errcode"), int):
        return Outcome(Verdict.TRANSIENT, "HTTP 200 without an errcode")
    errcode = body["errcode"]
    detail = f"errcode {errcode}: {str(body.get('errmsg', ''))[:200]}"
    if errcode == 0:
        return Outcome(Verdict.OK, detail, 0)
    if errcode in (45009, 130101, 130102):
        return Outcome(Verdict.RATE_LIMITED, detail, errcode)
    if errcode in transient:
        return Outcome(Verdict.TRANSIENT, detail, errcode)
    return Outcome(Verdict.REJECTED, detail, errcode)


class WeCom:
    kind = "wecom"
    limit = WECOM_MARKDOWN_LIMIT
    transient = WECOM_TRANSIENT

    def __init__(self, url: str, key: str) -> None:
        self._url = f"{url}?{urllib.parse.urlencode({'key': key})}"

    def url(self) -> str:
        return self._url

    def markdown(self, message: Message, mention: Mention | None = None) -> dict[str, Any]:
        return {"msgtype": "markdown", "markdown": {"content": message.text}}

    def mention(self, message: Message, mention: Mention) -> dict[str, Any] | None:
        """WeCom notifies mentioned people only for text messages (markdown has just <@userid>),
        so mentions go in a short text message after the markdown one."""
        people = [*mention.userids, *(["@all"] if mention.all else [])]
        text: dict[str, Any] = {"content": message.title.encode()[:WECOM_TEXT_LIMIT]
                                .decode(errors="ignore")}
        if people:
            text["mentioned_list"] = people
        if mention.mobiles:
            text["mentioned_mobile_list"] = list(mention.mobiles)
        return {"msgtype": "text", "text": text}

    def mention_line(self, mention: Mention) -> str:
        return ""  # WeCom's markdown gets no mention line; the text message carries them


class DingTalk:
    kind = "dingtalk"
    limit = DINGTALK_MARKDOWN_LIMIT
    transient = DINGTALK_TRANSIENT

    def __init__(self, url: str, token: str, secret: str | None) -> None:
        self._url = url
        self._token = token
        self._secret = secret

    def url(self, now_ms: int | None = None) -> str:
        """access_token, plus timestamp and sign when the robot has a signing secret: base64 of
        HMAC-SHA256 over "timestamp\\nsecret" keyed by the secret (DingTalk's algorithm)."""
        query = {"access_token": self._token}
        if self._secret is not None:
            timestamp = str(now_ms if now_ms is not None else int(time.time() * 1000))
            digest = hmac.new(self._secret.encode(), f"{timestamp}\n{self._secret}".encode(),
                              hashlib.sha256).digest()
            query.update(timestamp=timestamp, sign=base64.b64encode(digest).decode())
        return f"{self._url}?{urllib.parse.urlencode(query)}"

    def markdown(self, message: Message, mention: Mention | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"msgtype": "markdown",
                                "markdown": {"title": message.title, "text": message.text}}
        if mention is not None and mention.anyone:
            body["at"] = {"atMobiles": list(mention.mobiles), "atUserIds": list(mention.userids),
                          "isAtAll": mention.all}
        return body

    def mention(self, message: Message, mention: Mention) -> dict[str, Any] | None:
        return None  # the markdown message carries them

    def mention_line(self, mention: Mention) -> str:
        # DingTalk shows markdown mentions only when the text names them.
        names = [f"@{m}" for m in (*mention.mobiles, *mention.userids)]
        if mention.all:
            names.append("@all")
        return " ".join(names)


class Robot(Protocol):
    kind: str
    limit: int
    transient: frozenset[int]

    def url(self) -> str: ...

    def markdown(self, message: Message, mention: Mention | None = None) -> dict[str, Any]: ...

    def mention(self, message: Message, mention: Mention) -> dict[str, Any] | None: ...

    def mention_line(self, mention: Mention) -> str: ...
