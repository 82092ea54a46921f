"""The HTTP surface. Handlers only read: cached exposition bytes and health state."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web

from agent.config import WebConfig
from agent.health import Health
from agent.negotiate import OPENMETRICS, accepts_gzip, choose_format
from agent.render import Exposition

# aiohttp awaits drain only between writes, so large bodies go out in slices.
WRITE_CHUNK = 256 * 1024


class MetricsHandler:
    """Serves the pre-rendered exposition; at most max_requests responses in flight (0: no cap)."""

    def __init__(self, exposition: Callable[[], Exposition], max_requests: int,
                 write_timeout: float) -> None:
        self._exposition = exposition
        self._max_requests = max_requests
        self._write_timeout = write_timeout
        self._in_flight = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self._max_requests and self._in_flight >= self._max_requests:
            return web.Response(status=503, text="too many concurrent scrapes, try again later\n")
        self._in_flight += 1
        try:
            expo = self._exposition()
            fmt = choose_format(request.headers.get("Accept"))
            body = expo.openmetrics if fmt == OPENMETRICS else expo.text
            gzipped = accepts_gzip(request.headers.get("Accept-Encoding"))
            payload = body.gzipped if gzipped else body.plain
            headers = {"Content-Type": body.content_type, "Vary": "Accept, Accept-Encoding"}
            if gzipped:
                headers["Content-Encoding"] = "gzip"
            if len(payload) <= WRITE_CHUNK:
                # Fits the socket buffers: nothing for a slow reader to hold up.
                return web.Response(body=payload, headers=headers)
            response = web.StreamResponse(headers=headers)
            response.content_length = len(payload)
            # Written inside the handler (awaiting drain), so the in-flight count covers
            # slow readers; a reader that stalls past the write timeout is cut off.
            async with asyncio.timeout(self._write_timeout):
                await response.prepare(request)
                view = memoryview(payload)
                for start in range(0, len(view), WRITE_CHUNK):
                    await response.write(view[start:start + WRITE_CHUNK])
                await response.write_eof()
            return response
        finally:
            self._in_flight -= 1


def build_app(health: Health, exposition: Callable[[], Exposition], settings: WebConfig
              ) -> web.Application:
    async def healthy(request: web.Request) -> web.Response:
        return web.Response(text="Healthy\n")

    async def ready(request: web.Request) -> web.Response:
        if health.ready():
            return web.Response(text="Ready\n")
        return web.Response(status=503, text=f"Not ready: {health.phase()}\n")

    async def health_json(request: web.Request) -> web.Response:
        status, body = health.report()
        return web.json_response(body, status=status)

    app = web.Application()
    metrics = MetricsHandler(exposition, settings.max_requests, settings.write_timeout)
    app.router.add_get("/metrics", metrics.handle)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_get("/health", health_json)
    return app
