"""The relay process: reads its config and secrets, serves the webhook, /metrics and probes,
and runs one outbox per robot."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import os
import signal
import time
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from agent import __version__, security, webconfig
from agent.config import ConfigError, WebConfig, parse_listen_address
from agent.exposition.formats import CONTENT_TYPES
from agent.exposition.negotiate import accepts_gzip, choose_format
from agent.exposition.response import respond
from agent.listener import LISTEN_BACKLOG
from agent.logs import kv
from agent.relay.config import RelayConfig, Route, read_secret
from agent.relay.delivery import Outbox
from agent.relay.message import Templates
from agent.relay.metrics import RelayMetrics
from agent.relay.notification import PayloadError, parse
from agent.relay.robots import DingTalk, Redactor, Robot, WeCom
from agent.systemd import Notifier

log = logging.getLogger("hostagent.relay")
WEBHOOK_PATH = "/alertmanager/{route}"
MAX_BODY = 4 << 20  # Alertmanager sends every alert of a group unless max_alerts caps it


class StartupError(Exception):
    pass


def build_robots(config: RelayConfig) -> tuple[dict[str, list[tuple[Robot, str]]], list[str]]:
    """Per route, its robots and an identity (robots named twice share one outbox); and every
    secret, for redaction. ConfigError names the field and file of every unreadable secret."""
    robots: dict[str, list[tuple[Robot, str]]] = {}
    secrets: list[str] = []
    problems: list[str] = []

    def read(path: Path, field: str) -> str:
        try:
            return read_secret(path, field)
        except ConfigError as exc:
            problems.extend(exc.problems)
            return ""

    for index, route in enumerate(config.routes):
        mine: list[tuple[Robot, str]] = []
        where = f"routes[{index}]"
        if route.wecom is not None:
            key = read(route.wecom.key_file, f"{where}.wecom.key_file")
            secrets.append(key)
            mine.append((WeCom(route.wecom.url, key), f"wecom {route.wecom.url} {key}"))
        if route.dingtalk is not None:
            settings = route.dingtalk
            token = read(settings.token_file, f"{where}.dingtalk.token_file")
            secret = (read(settings.secret_file, f"{where}.dingtalk.secret_file")
                      if settings.secret_file is not None else None)
            secrets += [token, secret or ""]
            mine.append((DingTalk(settings.url, token, secret),
                         f"dingtalk {settings.url} {token} {secret}"))
        robots[route.name] = mine
    if problems:
        raise ConfigError(problems)
    return robots, secrets


@dataclass(frozen=True)
class Setup:
    """Everything the relay derives from one config; a reload replaces it whole."""

    config: RelayConfig
    routes: dict[str, Route]
    robots: dict[str, list[tuple[Robot, str]]]
    redact: Redactor
    templates: Templates
    web: WebConfig


def prepare(config: RelayConfig) -> Setup:
    """Reads the secrets, template and web config file a config names (blocking). ConfigError
    lists every problem found, one line each."""
    problems: list[str] = []
    robots: dict[str, list[tuple[Robot, str]]] = {}
    secrets: list[str] = []
    templates = None
    try:
        robots, secrets = build_robots(config)
    except ConfigError as exc:
        problems += exc.problems
    try:
        templates = Templates(zoneinfo.ZoneInfo(config.timezone), config.template_file)
    except ConfigError as exc:
        problems += exc.problems
    try:
        webconfig.load(config.web.config_file)
    except ConfigError as exc:
        problems += exc.problems
    if problems or templates is None:
        raise ConfigError(problems)
    return Setup(config, {route.name: route for route in config.routes}, robots,
                 Redactor(secrets), templates, web_settings(config))


# Settings a running relay keeps until it restarts: the listener is bound once.
RESTART_ONLY = ("listen_address", "shutdown_timeout")


class Relay:
    def __init__(self, config: RelayConfig, notifier: Notifier | None = None,
                 source: Callable[[], RelayConfig] | None = None) -> None:
        """source reads the config again (blocking) for a reload; without it, SIGHUP only
        re-reads the secret, template and web config files the running config names."""
        self.notifier = notifier or Notifier()
        self.metrics = RelayMetrics()
        self.setup = prepare(config)
        self.outboxes: dict[str, Outbox] = {}
        self.addresses: list[str] = []
        self.endpoint = security.Endpoint()
        self.started = asyncio.Event()
        self._source = source or (lambda: config)
        self._session: aiohttp.ClientSession | None = None
        self._stop = asyncio.Event()
        self._stopping = False
        self._reload_lock = asyncio.Lock()
        self._reloads: set[asyncio.Task[None]] = set()
        self._label_routes(config)
        self.metrics.reloaded(True)

    @property
    def config(self) -> RelayConfig:
        return self.setup.config

    @property
    def routes(self) -> dict[str, Route]:
        return self.setup.routes

    def request_stop(self) -> None:
        self._stop.set()

    def _label_routes(self, config: RelayConfig) -> None:
        for route in config.routes:
            for result in ("delivered", "duplicate", "pending", "failed", "invalid"):
                self.metrics.notifications.labels(route.name, result)

    def _sync_outboxes(self, setup: Setup) -> list[Outbox]:
        """One outbox per robot identity of setup: kept ones take the new settings (their
        queue and delivery memory stay), new ones start. Returns those no route names now."""
        assert self._session is not None
        wanted: dict[str, Outbox] = {}
        for route in setup.config.routes:
            for robot, identity in setup.robots[route.name]:
                if identity in wanted:
                    continue
                settings = route.wecom if robot.kind == "wecom" else route.dingtalk
                assert settings is not None
                box = self.outboxes.get(identity)
                if box is None:
                    box = Outbox(robot, route.name, self._session, settings.rate_limit,
                                 setup.config.retry, settings.timeout, setup.config.dedup_window,
                                 self.metrics, setup.redact)
                    box.start()
                else:
                    box.configure(settings.rate_limit, setup.config.retry, settings.timeout,
                                  setup.config.dedup_window, setup.redact)
                wanted[identity] = box
        gone = [box for identity, box in self.outboxes.items() if identity not in wanted]
        self.outboxes = wanted
        return gone

    async def reload(self) -> None:
        """Re-read the config, its secret files, template and web config file and apply them
        all, or none: ConfigError (every problem, one line each, each logged) keeps the
        running ones."""
        async with self._reload_lock:
            self.notifier.reloading()
            try:
                setup = await self._prepare_reload()
            except BaseException as exc:
                if isinstance(exc, ConfigError):
                    self.metrics.reloaded(False)
                    for problem in exc.problems:
                        log.error("reload rejected, keeping the running config",
                                  extra=kv(problem=problem))
                self.notifier.ready(self._status_line())  # still running the old config
                raise
            old = self.setup
            self.setup = setup
            self._label_routes(setup.config)
            gone = self._sync_outboxes(setup)
            if setup.config.log_level != old.config.log_level:
                logging.getLogger().setLevel(setup.config.log_level.upper())
            self.metrics.reloaded(True)
            log.info("reloaded", extra=kv(routes=len(setup.routes), robots=len(self.outboxes)))
            self.notifier.ready(self._status_line())
            for box in gone:  # what they still held fails: Alertmanager retries it
                await box.stop()

    async def _prepare_reload(self) -> Setup:
        try:
            config = await asyncio.to_thread(self._source)
            kept = {name: getattr(self.config, name) for name in RESTART_ONLY
                    if getattr(config, name) != getattr(self.config, name)}
            for name, value in kept.items():
                log.warning("setting changed but needs a restart, keeping the running value",
                            extra=kv(field=name, running=value, configured=getattr(config, name)))
            config = config.model_copy(update=kept)
            setup = await asyncio.to_thread(prepare, config)
            await self.endpoint.load(config.web.config_file)  # TLS on/off: ConfigError
        except ConfigError:
            raise
        except Exception as exc:  # its text could quote the file: only its type
            raise ConfigError([f"reading the configuration failed: {type(exc).__name__}"]
                              ) from None
        return setup

    def _reload_on_signal(self) -> None:
        task = asyncio.create_task(self._reload_quietly(), name="reload")
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def _reload_quietly(self) -> None:
        with contextlib.suppress(ConfigError):  # logged, one line per problem
            await self.reload()

    def _status_line(self) -> str:
        return f"relaying for {len(self.routes)} routes"

    def web_settings(self) -> WebConfig:
        return self.setup.web

    def app(self) -> web.Application:
        """Request metrics first, so requests refused for want of credentials count too."""
        app = web.Application(middlewares=[self.metrics.requests.middleware()],
                              client_max_size=MAX_BODY)
        app.router.add_post(WEBHOOK_PATH, self.webhook)
        app.router.add_get("/metrics", self.metrics_page)
        app.router.add_get("/-/healthy", self.healthy)
        app.router.add_get("/-/ready", self.ready)
        security.protect(app, self.endpoint, self.web_settings)
        return app

    async def healthy(self, request: web.Request) -> web.Response:
        return web.Response(text="Healthy\n")

    async def ready(self, request: web.Request) -> web.Response:
        if self.started.is_set() and not self._stopping:
            return web.Response(text="Ready\n")
        return web.Response(status=503, text="Not ready\n")

    async def metrics_page(self, request: web.Request) -> web.StreamResponse:
        fmt = choose_format(request.headers.get("Accept"))
        payload = self.metrics.body(fmt)
        headers = {"Content-Type": CONTENT_TYPES[fmt], "Vary": "Accept, Accept-Encoding"}
        if accepts_gzip(request.headers.get("Accept-Encoding")):
            payload = gzip.compress(payload, compresslevel=1)  # a few kB: on the loop
            headers["Content-Encoding"] = "gzip"
        return await respond(request, payload, headers, self.web_settings().write_timeout)

    async def webhook(self, request: web.Request) -> web.Response:
        name = request.match_info["route"]
        if name not in self.routes:
            return web.Response(status=404, text=f"no route named {name[:64]!r}\n")
        try:
            notification = parse(json.loads(await request.read()))
        except (ValueError, PayloadError) as exc:
            self.metrics.notifications.labels(name, "invalid").inc()
            problem = str(exc) if isinstance(exc, PayloadError) else "the body is not JSON"
            log.warning("invalid notification", extra=kv(route=name, problem=problem))
            return web.Response(status=400, text=f"{problem}\n")
        setup = self.setup  # one config for the whole request, whatever a reload does
        route = setup.routes.get(name)
        if route is None:
            return web.Response(status=404, text=f"no route named {name[:64]!r}\n")
        key = notification.key()
        firing = notification.status == "firing"
        mention = route.mention if route.mention.anyone and (
            firing or route.mention.resolved) else None
        futures: list[asyncio.Future[bool]] = []
        duplicate = True
        for robot, identity in setup.robots[name]:
            box = self.outboxes[identity]
            line = robot.mention_line(mention) if mention else ""
            message = setup.templates.render(notification, robot.limit, line)
            bodies = [("", robot.markdown(message, mention))]
            extra = robot.mention(message, mention) if mention else None
            if extra is not None:
                bodies.append((":mention", extra))
            for suffix, body in bodies:
                message_key = f"{name}:{key}{suffix}"
                duplicate = duplicate and box.delivered(message_key)
                futures.append(box.submit(message_key, name, body))
        done, pending = await asyncio.wait(futures, timeout=setup.config.response_timeout)
        fields = kv(route=name, status=notification.status, alerts=len(notification.alerts),
                    key=key[:12])
        if pending:
            self.metrics.notifications.labels(name, "pending").inc()
            log.info("delivery still in progress, answering 503", extra=fields)
            return web.Response(status=503, text="delivery in progress, retry later\n")
        if not all(f.result() for f in done):
            self.metrics.notifications.labels(name, "failed").inc()
            return web.Response(status=502, text="a robot did not accept the message\n")
        result = "duplicate" if duplicate else "delivered"
        self.metrics.notifications.labels(name, result).inc()
        log.info(f"notification {result}", extra=fields)
        return web.Response(text=f"{result}\n")

    async def run(self) -> int:
        await self.endpoint.load(self.config.web.config_file)  # ConfigError: exit 2
        timeout = aiohttp.ClientTimeout(total=None)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            self._session = session
            self._sync_outboxes(self.setup)
            runner = web.AppRunner(self.app(), access_log=None,
                                   shutdown_timeout=self.config.shutdown_timeout,
                                   **security.limits(self.web_settings()))
            await runner.setup()
            host, port = parse_listen_address(self.config.listen_address)
            try:
                await web.TCPSite(runner, host, port, ssl_context=self.endpoint.context,
                                  backlog=LISTEN_BACKLOG).start()
            except OSError as exc:
                await runner.cleanup()
                reason = os.strerror(exc.errno) if exc.errno else str(exc)
                raise StartupError(
                    f"cannot listen on {self.config.listen_address}: {reason}") from None
            self.addresses = [_format(a) for a in runner.addresses]
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
            loop.add_signal_handler(signal.SIGHUP, self._reload_on_signal)
            watcher = asyncio.create_task(self.endpoint.watch(), name="web-config")
            log.info("listening", extra=kv(version=__version__, address=",".join(self.addresses),
                                           tls=self.endpoint.context is not None,
                                           routes=len(self.routes), robots=len(self.outboxes)))
            self.started.set()
            self.notifier.ready(self._status_line())
            try:
                await self._stop.wait()
            finally:
                log.info("shutting down")
                self._stopping = True
                self.notifier.stopping()
                watcher.cancel()
                started = time.monotonic()
                await runner.cleanup()  # in-flight webhooks finish or are cut at the timeout
                log.debug("web server stopped", extra=kv(seconds=time.monotonic() - started))
                for task in list(self._reloads):
                    task.cancel()
                for box in self.outboxes.values():
                    await box.stop()
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    loop.remove_signal_handler(sig)
        return 0


def web_settings(config: RelayConfig) -> WebConfig:
    """The agent's web settings that the shared security layer reads, for the relay."""
    return WebConfig(config_file=config.web.config_file,
                     auth_exempt_probes=config.web.auth_exempt_probes, max_body_size=MAX_BODY)


def _format(address: object) -> str:
    if isinstance(address, tuple):
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return str(address)


def check(path: Path, overrides: dict[str, object] | None = None) -> RelayConfig:
    """Validate a relay config, its secrets, template and web config (ConfigError otherwise)."""
    from agent.relay.config import load

    config = load(path, overrides)
    prepare(config)
    return config
