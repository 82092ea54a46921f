"""The /debug/* routes, added to the app only when debug.enabled is set (404 otherwise).

Sampling and heap snapshots run in threads; the handlers only await them.
"""

from __future__ import annotations

import asyncio
import threading
import tracemalloc
from typing import TypeVar

from aiohttp import web

from agent.config import DebugConfig
from agent.profiling import heap, sampler, tasks

# (lowest, highest, default) of each query parameter.
SECONDS = (1.0, 60.0, 10.0)
HZ = (1.0, 1000.0, 100.0)
TOP = (1, 1000, 20)

N = TypeVar("N", int, float)

NOT_TRACING = ("tracemalloc is not tracing: set debug.tracemalloc: true in the config and "
               "restart, or POST /debug/heap/start\n")


def _param(request: web.Request, name: str, bounds: tuple[N, N, N]) -> N:
    low, high, default = bounds
    raw = request.query.get(name)
    if raw is None:
        return default
    kind = type(default)
    try:
        value = kind(raw)
    except ValueError:
        expected = "an integer" if kind is int else "a number"
        raise web.HTTPBadRequest(text=f"{name}: expected {expected}, got {raw!r}\n") from None
    if not low <= value <= high:
        raise web.HTTPBadRequest(text=f"{name}: must be between {low:g} and {high:g}, "
                                      f"got {raw}\n")
    return value


class DebugRoutes:
    def __init__(self, settings: DebugConfig) -> None:
        self._settings = settings
        self._profile_stop: threading.Event | None = None  # set while a profile runs
        self._tracing = False  # whether tracemalloc was started here, so stops here

    def add_to(self, app: web.Application) -> None:
        app.router.add_get("/debug/profile", self.profile)
        app.router.add_get("/debug/tasks", self.tasks)
        app.router.add_get("/debug/threads", self.threads)
        app.router.add_get("/debug/heap", self.heap)
        app.router.add_post("/debug/heap/start", self.heap_start)
        app.router.add_post("/debug/heap/stop", self.heap_stop)
        app.on_startup.append(self._startup)
        app.on_shutdown.append(self._shutdown)
        app.on_cleanup.append(self._cleanup)

    async def profile(self, request: web.Request) -> web.Response:
        seconds, hz = _param(request, "seconds", SECONDS), _param(request, "hz", HZ)
        if self._profile_stop is not None:
            return web.Response(status=409, text="a profile is already running, try again "
                                "when it has finished\n")
        stop = self._profile_stop = threading.Event()
        try:
            counts = await asyncio.to_thread(sampler.sample, seconds, hz, stop)
        finally:
            stop.set()
            self._profile_stop = None
        return web.Response(text=sampler.folded(counts))

    async def tasks(self, request: web.Request) -> web.Response:
        return web.Response(text=tasks.dump_tasks())

    async def threads(self, request: web.Request) -> web.Response:
        return web.Response(text=tasks.dump_threads())

    async def heap(self, request: web.Request) -> web.Response:
        report = await asyncio.to_thread(heap.top, _param(request, "top", TOP))
        if report is None:
            return web.Response(status=409, text=NOT_TRACING)
        return web.Response(text=report)

    async def heap_start(self, request: web.Request) -> web.Response:
        if not tracemalloc.is_tracing():
            tracemalloc.start()
            self._tracing = True
        return web.Response(text="tracing allocations: GET /debug/heap?top=N\n")

    async def heap_stop(self, request: web.Request) -> web.Response:
        tracemalloc.stop()
        self._tracing = False
        return web.Response(text="stopped tracing allocations\n")

    async def _startup(self, app: web.Application) -> None:
        if self._settings.tracemalloc and not tracemalloc.is_tracing():
            tracemalloc.start()
            self._tracing = True

    async def _shutdown(self, app: web.Application) -> None:
        if self._profile_stop is not None:
            self._profile_stop.set()  # answer with what was sampled so far

    async def _cleanup(self, app: web.Application) -> None:
        if self._tracing:
            tracemalloc.stop()
            self._tracing = False
