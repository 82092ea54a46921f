"""The one way an exposition body leaves the agent, for /metrics and /probe alike."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from aiohttp import web

log = logging.getLogger("hostagent.web")

# aiohttp awaits drain only between writes, so large bodies go out in slices.
WRITE_CHUNK = 256 * 1024


async def respond(request: web.Request, payload: bytes, headers: Mapping[str, str],
                  write_timeout: float) -> web.StreamResponse:
    """Writes the whole response inside the handler, so whatever counts handlers in flight
    (web.max_requests) counts a slow reader too, and bounds it: a reader that has not taken
    the body within write_timeout loses its connection. The connection is aborted, not closed:
    a close would wait to flush the buffer the reader is not taking."""
    response = web.StreamResponse(headers=headers)
    response.content_length = len(payload)
    try:
        async with asyncio.timeout(write_timeout):
            await response.prepare(request)
            if request.method != "HEAD":
                view = memoryview(payload)
                for start in range(0, len(view), WRITE_CHUNK):
                    await response.write(view[start:start + WRITE_CHUNK])
            await response.write_eof()
    except TimeoutError:
        transport = request.transport
        if transport is not None:
            transport.abort()
        log.debug("client too slow, connection aborted",
                  extra={"kv": {"path": request.path, "timeout": write_timeout}})
    except ConnectionError:
        pass  # the client went away; aiohttp's own bookkeeping sees the closed transport
    return response
