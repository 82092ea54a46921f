"""The HTTP surface. Handlers only read: cached exposition bytes and health state."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from agent.config import ConfigError, WebConfig
from agent.exposition.negotiate import choose_format
from agent.exposition.render import Renderer
from agent.exposition.response import serve
from agent.health import Health
from agent.httpmetrics import RequestMetrics
from agent.lifecycle import Stopping

if TYPE_CHECKING:
    from agent.status_page import PageFacts


class MetricsHandler:
    """Serves the pre-rendered exposition; at most max_requests responses in flight (0: no cap)."""

    def __init__(self, renderer: Renderer, settings: Callable[[], WebConfig]) -> None:
        self._renderer = renderer
        self._settings = settings
        self._in_flight = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        settings = self._settings()
        if settings.max_requests and self._in_flight >= settings.max_requests:
            return web.Response(status=503, text="too many concurrent scrapes, try again later\n")
        self._in_flight += 1
        try:
            fmt = choose_format(request.headers.get("Accept"))
            body = self._renderer.current.bodies.get(fmt) or await self._renderer.body(fmt)
            return await serve(request, body, self._renderer.gzipped, settings.write_timeout)
        finally:
            self._in_flight -= 1


def build_app(
    health: Health,
    renderer: Renderer,
    settings: Callable[[], WebConfig],
    reload: Callable[[], Awaitable[None]],
    disabled_collectors: Callable[[], list[str]] = list,
    ssh_status: Callable[[], tuple[int, int] | None] = lambda: None,
    requests: RequestMetrics | None = None,
    page_facts: Callable[[], PageFacts] | None = None,
) -> web.Application:
    """settings is read per request, so a reload applies limits without a restart.
    ssh_status: (SSH targets up, targets) while the SSH worker runs.
    requests: counts every request, outside the auth check so 401s count too.
    page_facts: the status page's host name, addresses, charts and the like."""

    async def status_page(request: web.Request) -> web.Response:
        # Loaded on the first visit: most agents are only ever scraped (~0.1 MB of RSS).
        from agent.status_page import render_status_page

        _, report = health.report()
        facts = page_facts() if page_facts is not None else None
        # A few ms with a full hour of charts: in a thread, so scrapes do not wait on it.
        page = await asyncio.to_thread(render_status_page, report, disabled_collectors(),
                                       ssh_status(), facts)
        return web.Response(text=page, content_type="text/html")

    async def healthy(request: web.Request) -> web.Response:
        return web.Response(text="Healthy\n")

    async def ready(request: web.Request) -> web.Response:
        if health.ready():
            return web.Response(text="Ready\n")
        return web.Response(status=503, text=f"Not ready: {health.phase()}\n")

    async def health_json(request: web.Request) -> web.Response:
        status, body = health.report()
        return web.json_response(body, status=status)

    async def reload_config(request: web.Request) -> web.Response:
        if not settings().enable_lifecycle:
            return web.Response(status=403, text="lifecycle API is not enabled "
                                "(set web.enable_lifecycle: true)\n")
        try:
            await reload()
        except ConfigError as exc:
            return web.Response(status=400, text="\n".join(exc.problems) + "\n")
        except Stopping as exc:
            return web.Response(status=503, text=f"{exc}\n")
        return web.Response(text="reloaded\n")

    app = web.Application(middlewares=[requests.middleware()] if requests else [])
    metrics = MetricsHandler(renderer, settings)
    app.router.add_get("/", status_page)
    app.router.add_get(settings().telemetry_path, metrics.handle)
    app.router.add_post("/-/reload", reload_config)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_get("/health", health_json)
    return app
