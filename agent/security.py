"""Endpoint security from the web configuration file: TLS whose certificates rotate without a
restart, basic auth on every route, response headers and request limits.

The Endpoint holds the running WebSettings. A watcher re-reads the file, and the files it names,
when they change; reading and checking them runs in a thread, and a broken new file is logged and
leaves the running one in place.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import ssl
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError

from agent import webconfig
from agent.config import ConfigError, WebConfig
from agent.logs import kv
from agent.webconfig import WebSettings

log = logging.getLogger("hostagent")

PROBES = frozenset({"/-/healthy", "/-/ready"})
CHALLENGE = {hdrs.WWW_AUTHENTICATE: 'Basic realm="hostagent"'}
POLL_INTERVAL = 3.0
VERIFIED_CACHE = 256  # credentials remembered as good, so a scrape does not cost a bcrypt run
MAX_WAITING = 64  # requests queued for a bcrypt check; beyond it, 429


class ServerContext(ssl.SSLContext):
    """The listener's TLS context. Every new connection is set up from `current` (certificate,
    key, client verification, versions), so assigning a new context applies a rotated file to
    the next handshake while established connections keep theirs. asyncio and uvloop both create
    a connection's TLS object through wrap_bio. This context has no certificate of its own: a
    connection it set up itself would fail its handshake."""

    current: ssl.SSLContext

    def wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO,
                 server_side: bool = False, server_hostname: str | bytes | None = None,
                 session: ssl.SSLSession | None = None) -> ssl.SSLObject:
        return self.current.wrap_bio(incoming, outgoing, server_side, server_hostname, session)


def server_context(current: ssl.SSLContext) -> ServerContext:
    context = ServerContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.current = current
    return context


class BasicAuth:
    """Checks `Authorization: Basic` against the bcrypt table. A known and an unknown user cost
    the same bcrypt run (the unknown one against a decoy hash of the same cost); names are
    compared in constant time; one bcrypt check runs at a time, in a thread."""

    def __init__(self, users: Mapping[str, bytes], decoy: bytes) -> None:
        self._key = secrets.token_bytes(32)
        self._users = [(self._mac(name.encode()), hashed) for name, hashed in users.items()]
        self._decoy = decoy
        self._verified: set[bytes] = set()
        self._bcrypt = asyncio.Lock()
        self._waiting = 0

    @property
    def enabled(self) -> bool:
        return bool(self._users)

    def _mac(self, data: bytes) -> bytes:
        return hmac.new(self._key, data, hashlib.sha256).digest()

    async def check(self, header: str | None) -> bool:
        credentials = _parse_basic(header)
        if credentials is None:
            return False
        user, password = credentials
        token = self._mac(len(user).to_bytes(4, "big") + user + password)
        if token in self._verified:
            return True
        name = self._mac(user)
        stored = None
        for candidate, hashed in self._users:
            if hmac.compare_digest(candidate, name):
                stored = hashed
        if self._waiting >= MAX_WAITING:
            raise web.HTTPTooManyRequests(text="too many authentication attempts, try again\n",
                                          headers={hdrs.RETRY_AFTER: "1"})
        self._waiting += 1
        try:
            async with self._bcrypt:
                import bcrypt  # only with basic auth configured (loaded with its settings)

                # bcrypt uses the first 72 bytes of a password, as the exporter-toolkit does.
                matches = await asyncio.to_thread(bcrypt.checkpw, password[:72],
                                                  stored or self._decoy)
        finally:
            self._waiting -= 1
        if not (matches and stored is not None):
            return False
        if len(self._verified) >= VERIFIED_CACHE:
            self._verified.clear()
        self._verified.add(token)
        return True


def _parse_basic(header: str | None) -> tuple[bytes, bytes] | None:
    if header is None:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    return (user, password) if sep else None


class Endpoint:
    """The running web configuration: what the middleware checks and the listener's context.
    Whether the listener speaks TLS is fixed by the first load; switching needs a restart."""

    def __init__(self, poll_interval: float = POLL_INTERVAL) -> None:
        self.poll_interval = poll_interval
        self.settings = WebSettings()
        self.auth = BasicAuth({}, b"")
        self.context: ServerContext | None = None
        self._loaded = False
        self._seen: webconfig.Stamp = ()
        self._lock = asyncio.Lock()
        self._has_file = asyncio.Event()  # the watcher sleeps on it while there is no file

    async def load(self, path: Path | None) -> None:
        """Read path (in a thread) and apply it. ConfigError leaves the running one in place."""
        async with self._lock:
            self.commit(await self.prepare(path))

    async def prepare(self, path: Path | None) -> WebSettings:
        """Read and check path (in a thread) without applying it. Raises ConfigError."""
        new = await asyncio.to_thread(webconfig.load, path)
        if self._loaded and new.tls != self.settings.tls:
            raise ConfigError([f"{path or 'web.config_file'}: switching TLS on or off "
                               "needs a restart"])
        return new

    def commit(self, new: WebSettings) -> None:
        """Apply what prepare read: synchronous, so no request sees half of it."""
        if new.context is not None:
            if self.context is None:
                self.context = server_context(new.context)
            else:
                self.context.current = new.context
        if new.users != self.settings.users:  # else keep the remembered credentials
            self.auth = BasicAuth(new.users, new.decoy)
        self.settings, self._seen, self._loaded = new, new.stamp, True
        if new.path is None:
            self._has_file.clear()
        else:
            self._has_file.set()
        if new.path is not None:
            log.info("web config loaded", extra=kv(
                file=str(new.path), tls=new.tls, users=len(new.users),
                client_auth=_client_auth(new.context)))

    async def watch(self) -> None:
        """Re-read the file when it, or a file it names, changes (mtime, size or inode).
        Without a file (the usual case) it polls nothing and never wakes."""
        while True:
            await self._has_file.wait()
            await asyncio.sleep(self.poll_interval)
            current = self.settings
            if current.path is None:
                continue
            seen = await asyncio.to_thread(webconfig.fingerprint, current.watched)
            if seen == self._seen:
                continue
            self._seen = seen  # a broken state is reported once, not at every poll
            try:
                await self.load(current.path)
            except ConfigError as exc:
                for problem in exc.problems:
                    log.error("web config change rejected, keeping the running one",
                              extra=kv(problem=problem))
            except Exception as exc:  # the watcher must outlive any surprise
                log.error("web config change rejected, keeping the running one",
                          extra=kv(err=type(exc).__name__))


def _client_auth(context: ssl.SSLContext | None) -> str:
    if context is None:
        return "none"
    return {ssl.CERT_NONE: "none", ssl.CERT_OPTIONAL: "optional",
            ssl.CERT_REQUIRED: "required"}[context.verify_mode]


def protect(app: web.Application, endpoint: Endpoint, settings: Callable[[], WebConfig]) -> None:
    """Body limit and basic auth on every route, the configured headers on every response.
    With web.auth_exempt_probes, /-/healthy and /-/ready answer without credentials."""

    @web.middleware
    async def guard(request: web.Request,
                    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                    ) -> web.StreamResponse:
        config = settings()
        if request.body_exists:
            if request.content_length is None:
                raise web.HTTPLengthRequired(text="a request body needs a Content-Length\n")
            if request.content_length > config.max_body_size:
                raise web.HTTPRequestEntityTooLarge(config.max_body_size,
                                                    request.content_length)
        auth = endpoint.auth
        exempt = config.auth_exempt_probes and _is_probe(request)
        if (auth.enabled and not exempt
                and not await auth.check(request.headers.get(hdrs.AUTHORIZATION))):
            raise web.HTTPUnauthorized(text="Unauthorized\n", headers=CHALLENGE)
        return await handler(request)

    async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
        if headers := endpoint.settings.headers:  # usually none: no update per request
            response.headers.update(headers)

    app.middlewares.append(guard)
    app.on_response_prepare.append(add_headers)


def _is_probe(request: web.Request) -> bool:
    resource = request.match_info.route.resource
    return resource is not None and resource.canonical in PROBES


class _ClientErrors(logging.Filter):
    """aiohttp logs every malformed request at error level with a traceback that quotes the
    client's bytes (which may hold credentials): keep a one-line debug message instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, HttpProcessingError):
            return True
        if not log.isEnabledFor(logging.DEBUG):
            return False
        record.msg, record.args = "bad request", None
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        record.__dict__["kv"] = {"status": error.code}
        return True


def limits(config: WebConfig) -> dict[str, Any]:
    """Keyword arguments for web.AppRunner and each connection's handler (fixed for the
    listener's lifetime). aiohttp's keep-alive timer closes a connection left idle for
    idle_timeout after a response; agent.connection pulls it in to read_timeout for a
    request's line and headers."""
    logger = logging.getLogger("hostagent.http")
    if not any(isinstance(f, _ClientErrors) for f in logger.filters):
        logger.addFilter(_ClientErrors())
    return {"keepalive_timeout": config.idle_timeout, "max_line_size": config.max_header_size,
            "max_field_size": config.max_header_size, "logger": logger}
