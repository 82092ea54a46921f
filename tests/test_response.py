"""When a reply needs no write timer: only when handing it over cannot wait on the reader,
judged on a real uvloop transport whose peer stops reading."""

from __future__ import annotations

import asyncio
import socket

import uvloop

from agent.exposition.response import _cannot_wait


async def check() -> None:
    accepted: asyncio.Future[asyncio.StreamWriter] = asyncio.get_running_loop().create_future()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set_result(writer)

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    peer = socket.socket()  # never reads
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    peer.setblocking(False)
    await asyncio.get_running_loop().sock_connect(peer, ("127.0.0.1", port))
    writer = await asyncio.wait_for(accepted, 10)
    transport = writer.transport
    try:
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        low, high = transport.get_write_buffer_limits()
        assert _cannot_wait(transport, 12_000)  # a gzipped exposition, empty buffer
        assert not _cannot_wait(transport, high)  # over the high-water mark with its head
        assert not _cannot_wait(None, 10)
        transport.write(b"x" * (high // 2))  # the reader takes nothing: it stays buffered
        assert transport.get_write_buffer_size() > low
        assert not _cannot_wait(transport, 10)
    finally:
        transport.abort()
        peer.close()
        server.close()
        await server.wait_closed()


def test_a_reply_waits_only_when_the_buffer_could_fill() -> None:
    uvloop.run(check())
