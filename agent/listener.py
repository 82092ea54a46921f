"""The agent's TCP listener: every pending connection is accepted at once.

uvloop's own listener (libuv) takes one connection off the accept queue per loop iteration
while the loop is busy. With 200 scrapers connecting together each iteration answers the
requests of those already in, so the last of the burst waited ~200 iterations (0.3-0.6 s) for
its first reply. Here a reader on the listening socket drains the queue in one go and hands
every socket to the loop, as asyncio's own loop does.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any

from aiohttp import web

log = logging.getLogger("hostagent.http")

# The listen backlog asked for; the kernel caps it at net.core.somaxconn, so the queue is as
# deep as the host allows, as with Go's listeners (node_exporter). aiohttp's default of 128
# overflows when more scrapers connect at once: the kernel then drops their handshakes and
# their first request waits for a TCP retransmission (0.2-1 s).
LISTEN_BACKLOG = 65535
# Connections taken per wake-up of the reader (more wait for the next loop iteration).
MAX_ACCEPT = 1024
# After running out of file descriptors, the listener rests before accepting again.
ACCEPT_RETRY_SECONDS = 1.0


class _Listening:
    """What aiohttp's runner expects of a site's server: its sockets, and close()."""

    def __init__(self, sockets: list[socket.socket], close: Any) -> None:
        self.sockets = sockets
        self.close = close


class DrainingSite(web.BaseSite):
    """web.TCPSite's job (host "" or None: every interface) with the accept loop above.
    protocol makes each connection's handler (by default the runner's server, as aiohttp's)."""

    def __init__(self, runner: web.BaseRunner, host: str | None, port: int, *,
                 ssl_context: ssl.SSLContext | None = None,
                 protocol: Callable[[], asyncio.Protocol] | None = None) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=LISTEN_BACKLOG)
        self._protocol = protocol
        self._host = host or None
        self._port = port
        self._sockets: list[socket.socket] = []
        self._opening: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host or '0.0.0.0'}:{self._port}"

    async def start(self) -> None:
        await super().start()
        self._loop = loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
        try:
            for family, kind, proto, _, address in dict.fromkeys(infos):
                sock = socket.socket(family, kind, proto)
                self._sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
                sock.listen(LISTEN_BACKLOG)
                sock.setblocking(False)
        except OSError:
            self._close()
            raise
        self._server = _Listening(self._sockets, self._close)  # type: ignore[assignment]
        for sock in self._sockets:
            loop.add_reader(sock.fileno(), self.accept, sock)

    def accept(self, listening: socket.socket) -> None:
        """Takes every connection waiting on listening (up to MAX_ACCEPT)."""
        assert self._loop is not None
        factory = self._protocol or self._runner.server
        for _ in range(MAX_ACCEPT):
            try:
                conn, _ = listening.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:  # out of file descriptors and the like
                log.error("cannot accept connections, pausing the listener",
                          extra={"kv": {"err": exc.strerror or type(exc).__name__}})
                self._loop.remove_reader(listening.fileno())
                self._loop.call_later(ACCEPT_RETRY_SECONDS, self._resume, listening)
                return
            conn.setblocking(False)
            task = self._loop.create_task(self._loop.connect_accepted_socket(
                factory, conn, ssl=self._ssl_context))  # type: ignore[arg-type]
            self._opening.add(task)
            task.add_done_callback(self._opened)

    def _opened(self, task: asyncio.Task[Any]) -> None:
        self._opening.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            # A failed TLS handshake, a client gone at once: the client's doing.
            log.debug("connection not set up", extra={"kv": {"err": type(exc).__name__}})

    def _resume(self, listening: socket.socket) -> None:
        if self._loop is not None and listening in self._sockets:
            self._loop.add_reader(listening.fileno(), self.accept, listening)

    def _close(self) -> None:
        for sock in self._sockets:
            if self._loop is not None and sock.fileno() >= 0:
                self._loop.remove_reader(sock.fileno())
            sock.close()
        self._sockets.clear()
        for task in self._opening:
            task.cancel()
