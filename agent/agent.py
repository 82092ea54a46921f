"""The Agent owns the lifecycle: startup -> run -> shutdown, in reverse order, bounded."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal

from aiohttp import web

from agent import __version__, collectors
from agent.config import Config, parse_listen_address
from agent.health import Health
from agent.logs import kv
from agent.pool import DaemonThreadPool
from agent.registry import Registry
from agent.render import Renderer
from agent.scheduler import Job, Scheduler
from agent.web import build_app

log = logging.getLogger("hostagent")


class StartupError(Exception):
    """The agent could not start (e.g. cannot bind); exit code 3."""


def enabled_jobs(config: Config) -> list[Job]:
    jobs = []
    for name in collectors.FACTORIES:
        settings = getattr(config.collectors, name)
        if settings.enabled:
            jobs.append(Job(name, collectors.build(name, config), settings.interval,
                            settings.effective_timeout))
    return jobs


class Agent:
    def __init__(self, config: Config, jobs: list[Job] | None = None) -> None:
        self.config = config
        self.registry = Registry()
        self._pool = DaemonThreadPool(config.scheduler.workers, "collector")
        self._render_pool = DaemonThreadPool(1, "render")
        jobs = enabled_jobs(config) if jobs is None else jobs
        self.scheduler = Scheduler(jobs, self.registry, self._pool,
                                   config.scheduler.jitter)
        self.renderer = Renderer(self.registry, self.scheduler.statuses, self._render_pool)
        self.health = Health(self.scheduler.statuses, lambda: self.renderer.current)
        self.addresses: list[str] = []
        self.started = asyncio.Event()
        self._stop = asyncio.Event()

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> int:
        web_config = self.config.web
        app = build_app(self.health, lambda: self.renderer.current, web_config)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=web_config.shutdown_timeout)
        await runner.setup()
        host, port = parse_listen_address(web_config.listen_address)
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            await runner.cleanup()
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise StartupError(f"cannot listen on {web_config.listen_address}: {reason}") from None
        self.addresses = [_format_address(a) for a in runner.addresses]
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        self.scheduler.start()
        render_task = asyncio.create_task(self.renderer.run(), name="renderer")
        log.info("listening", extra=kv(version=__version__, address=",".join(self.addresses),
                                       collectors=len(self.scheduler.statuses())))
        self.started.set()
        try:
            await self._stop.wait()
        finally:
            await self._shutdown(runner, render_task)
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        return 0

    async def _shutdown(self, runner: web.AppRunner, render_task: asyncio.Task[None]) -> None:
        log.info("shutting down")
        self.health.stopping = True
        # Stops accepting, lets in-flight requests finish within the grace period.
        await runner.cleanup()
        await self.scheduler.stop()
        render_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await render_task
        # Threads stuck in a hung call are daemons: abandoned, they cannot block exit.
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._render_pool.shutdown(wait=False, cancel_futures=True)
        log.info("stopped")


def _format_address(address: object) -> str:
    if isinstance(address, tuple):
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return str(address)
