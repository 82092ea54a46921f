"""GET /probe and GET /sd: the SSH worker's results the Prometheus way.

/probe answers from the latest round only: a request never opens a connection, and a target
that is not configured is refused, so no request can make the agent connect anywhere.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from agent.config import WebConfig
from agent.exposition.negotiate import choose_format
from agent.exposition.render import Renderer
from agent.exposition.response import serve
from agent.ssh import MODULES, SshSupervisor


class SshRoutes:
    def __init__(self, supervisor: SshSupervisor, renderer: Renderer,
                 settings: Callable[[], WebConfig] = WebConfig) -> None:
        self._supervisor = supervisor
        self._renderer = renderer
        self._settings = settings

    def add_to(self, app: web.Application) -> None:
        app.router.add_get("/probe", self.probe)
        app.router.add_get("/sd", self.sd)

    async def probe(self, request: web.Request) -> web.StreamResponse:
        """The target's latest series without the `target` label and the target's labels
        (Prometheus sets them from /sd and relabeling), as blackbox_exporter does."""
        name = request.query.get("target")
        if not name:
            return web.Response(status=400, text="target: missing parameter\n")
        module = request.query.get("module")
        if module is not None and module not in MODULES:
            return web.Response(status=400, text=f"module: unknown module {module!r} "
                                f"(one of {', '.join(MODULES)})\n")
        worker = self._supervisor.worker
        if worker is None or worker.target(name) is None:
            return web.Response(status=404, text=f"target: {name!r} is not a configured "
                                "SSH target\n")
        enabled = worker.enabled_modules()
        if module is not None and module not in enabled:
            return web.Response(status=400, text=f"module: {module!r} is not enabled\n")
        fmt = choose_format(request.headers.get("Accept"))
        body = await self._renderer.target_body(name, module, fmt)
        if body is None:
            return web.Response(status=503, text=f"no results for {name!r} yet\n")
        return await serve(request, body, self._renderer.gzipped,
                           self._settings().write_timeout)

    async def sd(self, request: web.Request) -> web.Response:
        """Prometheus HTTP service discovery: one group per target this agent probes."""
        worker = self._supervisor.worker
        targets = worker.targets() if worker is not None else []
        return web.json_response([{"targets": [t.name], "labels": dict(t.labels)}
                                  for t in targets])
