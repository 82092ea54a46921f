"""The one way an exposition body leaves the agent, for /metrics and /probe alike."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from agent.exposition.negotiate import accepts_gzip
from agent.exposition.render import Body
from agent.httpmetrics import CUT_OFF

log = logging.getLogger("hostagent.web")

# aiohttp awaits drain only between writes, so large bodies go out in slices.
WRITE_CHUNK = 256 * 1024
# Room for a response's status line and headers, counted with its body against the transport's
# buffer limits.
HEAD_ROOM = 4096


async def respond(request: web.Request, payload: bytes, headers: Mapping[str, str],
                  write_timeout: float) -> web.StreamResponse:
    """Writes the whole response inside the handler, so whatever counts handlers in flight
    (web.max_requests) counts a slow reader too, and bounds it: a reader that has not taken
    the body within write_timeout loses its connection. The connection is aborted, not closed:
    a close would wait to flush the buffer the reader is not taking."""
    if len(payload) <= WRITE_CHUNK:
        # Head and body leave in one write (one send), where a StreamResponse sends its
        # head on its own first.
        response: web.StreamResponse = web.Response(body=payload, headers=headers)
    else:
        response = web.StreamResponse(headers=headers)
        response.content_length = len(payload)
    try:
        if _cannot_wait(request.transport, len(payload)):
            await _write(request, response, payload)
        else:
            async with asyncio.timeout(write_timeout):
                await _write(request, response, payload)
    except TimeoutError:
        transport = request.transport
        if transport is not None:
            transport.abort()
        request[CUT_OFF] = "write_timeout"
        log.debug("client too slow, connection aborted",
                  extra={"kv": {"path": request.path, "timeout": write_timeout}})
    except ConnectionError:
        # The client went away; aiohttp's own bookkeeping sees the closed transport.
        request[CUT_OFF] = "client_gone"
        log.debug("client gone mid-reply", extra={"kv": {"path": request.path}})
    return response


def _cannot_wait(transport: asyncio.WriteTransport | None, size: int) -> bool:
    """Whether writing size more bytes cannot suspend the handler: a write only waits (in
    aiohttp's drain) while the transport's buffer is over its high-water mark. When it is
    empty (at the low-water mark) and the reply fits under the high one, the reply is handed
    over at once, so no write timer is needed (one per request costs a timer in the loop)."""
    if transport is None:
        return False
    low, high = transport.get_write_buffer_limits()
    buffered = transport.get_write_buffer_size()
    return buffered <= low and buffered + size + HEAD_ROOM <= high


async def _write(request: web.Request, response: web.StreamResponse, payload: bytes) -> None:
    await response.prepare(request)
    if request.method != "HEAD" and not isinstance(response, web.Response):
        view = memoryview(payload)
        for start in range(0, len(view), WRITE_CHUNK):
            await response.write(view[start:start + WRITE_CHUNK])
    await response.write_eof()


async def serve(request: web.Request, body: Body, gzipped: Callable[[Body], Awaitable[bytes]],
                write_timeout: float) -> web.StreamResponse:
    """An exposition body, gzipped when the client accepts it (gzipped(body) gives those
    bytes, compressing off the event loop when they are not ready yet)."""
    use_gzip = accepts_gzip(request.headers.get("Accept-Encoding"))
    payload = await gzipped(body) if use_gzip else body.plain
    headers = {"Content-Type": body.content_type, "Vary": "Accept, Accept-Encoding"}
    if use_gzip:
        headers["Content-Encoding"] = "gzip"
    return await respond(request, payload, headers, write_timeout)
