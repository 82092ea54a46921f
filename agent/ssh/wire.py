"""Messages between the agent and its SSH worker process: each pickled, after its length (4
bytes, big-endian), over a socketpair that only the two processes hold. The configuration
crosses here and nowhere else (never argv, the environment or a log line)."""

from __future__ import annotations

import asyncio
import pickle
import struct
from typing import Any

HEADER = struct.Struct(">I")
MAX_MESSAGE = 1 << 30


def pack(message: Any) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    if len(data) > MAX_MESSAGE:
        raise ValueError(f"message of {len(data)} bytes is too large")
    return HEADER.pack(len(data)) + data


async def receive(reader: asyncio.StreamReader) -> Any:
    """The next message; EOFError when the other end closed (between messages or in one)."""
    try:
        size, = HEADER.unpack(await reader.readexactly(HEADER.size))
        return pickle.loads(await reader.readexactly(size))
    except asyncio.IncompleteReadError:
        raise EOFError from None
