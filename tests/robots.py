"""Loopback stand-ins for the WeCom group robot and the DingTalk custom robot APIs.

They check what the real ones check — the credential in the URL, DingTalk's signature and its
one-hour timestamp window, the message schema, the size limits, 20 messages a minute (or the
window a test sets) — answer with the real error codes (always HTTP 200, the verdict in
`errcode`), and record every message they accepted. A test can make one fail for a while.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import hashlib
import hmac
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

WECOM_PATH = "/cgi-bin/webhook/send"
DINGTALK_PATH = "/robot/send"


@dataclass
class Received:
    at: float
    robot: str  # "wecom:KEY" or "dingtalk:TOKEN"
    body: dict[str, Any]


@dataclass
class Robots:
    wecom_keys: set[str] = field(default_factory=set)
    dingtalk: dict[str, str | None] = field(default_factory=dict)  # token -> secret
    messages: int = 20
    interval: float = 60.0
    accepted: list[Received] = field(default_factory=list)
    refused: list[tuple[str, int]] = field(default_factory=list)  # (robot, errcode)
    outage_until: float = 0.0  # answer HTTP 503 until this monotonic time
    _sent: dict[str, collections.deque[float]] = field(
        default_factory=lambda: collections.defaultdict(collections.deque))
    base: str = ""

    def start(self) -> None:
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_post(WECOM_PATH, self._wecom)
            app.router.add_post(DINGTALK_PATH, self._dingtalk)
            self._runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            port = self._runner.addresses[0][1]
            self.base = f"http://127.0.0.1:{port}"
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        assert ready.wait(10)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def bodies(self, robot: str) -> list[dict[str, Any]]:
        return [r.body for r in list(self.accepted) if r.robot == robot]

    def _rate_limited(self, robot: str) -> bool:
        now = time.monotonic()
        sent = self._sent[robot]
        while sent and now - sent[0] >= self.interval:
            sent.popleft()
        sent.append(now)  # refused requests count too
        return len(sent) > self.messages

    def _answer(self, robot: str, errcode: int, errmsg: str,
                body: dict[str, Any] | None = None) -> web.Response:
        if errcode == 0 and body is not None:
            self.accepted.append(Received(time.monotonic(), robot, body))
        elif errcode:
            self.refused.append((robot, errcode))
        return web.json_response({"errcode": errcode, "errmsg": errmsg})

    async def _json(self, request: web.Request) -> Any:
        if request.content_type != "application/json":
            return None
        try:
            return await request.json()
        except ValueError:
            return None

    async def _wecom(self, request: web.Request) -> web.Response:
        if time.monotonic() < self.outage_until:
            return web.Response(status=503, text="unavailable")
        key = request.query.get("key", "")
        if key not in self.wecom_keys:
            return self._answer("wecom:?", 93000, "invalid webhook url")
        robot = f"wecom:{key}"
        if self._rate_limited(robot):
            return self._answer(robot, 45009, "api freq out of limit")
        body = await self._json(request)
        if not isinstance(body, dict):
            return self._answer(robot, 40008, "invalid message type")
        kind = body.get("msgtype")
        if kind == "markdown":
            content = body.get("markdown", {}).get("content")
            if not isinstance(content, str) or not content:
                return self._answer(robot, 41009, "missing markdown content")
            if len(content.encode()) > 4096:
                return self._answer(robot, 40058, "markdown.content exceed max length 4096")
        elif kind == "text":
            text = body.get("text", {})
            content = text.get("content")
            if not isinstance(content, str) or not content:
                return self._answer(robot, 41009, "missing text content")
            if len(content.encode()) > 2048:
                return self._answer(robot, 40058, "text.content exceed max length 2048")
            for name in ("mentioned_list", "mentioned_mobile_list"):
                value = text.get(name, [])
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    return self._answer(robot, 40058, f"invalid {name}")
        else:
            return self._answer(robot, 40008, "invalid message type")
        return self._answer(robot, 0, "ok", body)

    async def _dingtalk(self, request: web.Request) -> web.Response:
        if time.monotonic() < self.outage_until:
            return web.Response(status=503, text="unavailable")
        token = request.query.get("access_token", "")
        if token not in self.dingtalk:
            return self._answer("dingtalk:?", 300001, "token is not exist")
        robot = f"dingtalk:{token}"
        secret = self.dingtalk[token]
        if secret is not None:
            timestamp = request.query.get("timestamp", "")
            if not timestamp.isdigit() or abs(int(timestamp) - time.time() * 1000) > 3600_000:
                return self._answer(robot, 310000, "invalid timestamp")
            digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(),
                              hashlib.sha256).digest()
            if request.query.get("sign", "") != base64.b64encode(digest).decode():
                return self._answer(robot, 310000, "sign not match")
        if self._rate_limited(robot):
            return self._answer(robot, 130101, "send too fast, exceed 20 times per minute")
        body = await self._json(request)
        if not isinstance(body, dict) or body.get("msgtype") != "markdown":
            return self._answer(robot, 40035, "invalid parameter")
        markdown = body.get("markdown", {})
        if not all(isinstance(markdown.get(k), str) and markdown.get(k) for k in ("title", "text")):
            return self._answer(robot, 40035, "missing markdown title or text")
        if len(markdown["text"].encode()) > 20000:
            return self._answer(robot, 460101, "message too long")
        at = body.get("at", {})
        if not (isinstance(at.get("atMobiles", []), list)
                and isinstance(at.get("atUserIds", []), list)
                and isinstance(at.get("isAtAll", False), bool)):
            return self._answer(robot, 40035, "invalid at")
        return self._answer(robot, 0, "ok", body)
