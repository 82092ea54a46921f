"""An HTTP connection with two deadlines where aiohttp has one.

aiohttp's keep-alive timer both closes an idle connection and cuts off a client trickling a
request's headers: one timeout for both meant either Prometheus (whose client keeps an idle
connection 5 minutes) reconnecting for every 15 s scrape, at about the CPU of answering it, or
a slow client holding a connection for minutes. Here the timer runs `idle_timeout` (aiohttp's
keepalive_timeout) after a response, and is pulled in to `read_timeout` from the connection's
start or from the first byte of a request that did not arrive whole; later bytes do not
extend it. A request arriving in one read (a scrape) sets no timer of its own.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server


class Connection(RequestHandler):
    __slots__ = ("_read_timeout",)

    def __init__(self, manager: Server, *, read_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._read_timeout = read_timeout

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._cut_off_at(self._loop.time() + self._read_timeout)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        waiter = self._waiter
        if waiter is not None and not waiter.done():  # part of a request, still waiting
            self._cut_off_at(self._loop.time() + self._read_timeout)

    def _cut_off_at(self, deadline: float) -> None:
        """Close the connection at deadline if it still waits for a request then (aiohttp's
        _process_keepalive), unless the timer already runs out sooner."""
        handle = self._keepalive_handle
        if self.transport is None or (handle is not None
                                      and deadline >= self._next_keepalive_close_time):
            return
        if handle is not None:
            handle.cancel()
        self._next_keepalive_close_time = deadline
        self._keepalive_handle = self._loop.call_at(deadline, self._process_keepalive)


def factory(server: Server, read_timeout: float, **handler_args: Any) -> Callable[[], Connection]:
    """What aiohttp's Server makes per connection, as a Connection: handler_args are the
    keyword arguments given to web.AppRunner that it hands to each RequestHandler."""
    return functools.partial(Connection, server, loop=asyncio.get_running_loop(),
                             read_timeout=read_timeout, **handler_args)
