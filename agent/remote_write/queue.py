"""One remote write endpoint: its on-disk queue, its HTTP client and its send loop.

Samples reach the WAL before anything sends them. The send loop reads a wave of records (up to
`shards * max_samples_per_send` samples), sends each shard's part as requests of whole records
in parallel (a series always hashes to the same shard, so its samples stay in order), and
saves the read position once the whole wave is delivered or refused. A crash mid-wave resends
the wave: duplicates of identical samples, which receivers accept, never a gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import random
import ssl
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import aiohttp

from agent.logs import kv
from agent.remote_write import wire
from agent.remote_write.encode import Batch, Encoder
from agent.remote_write.relabel import Relabeler
from agent.remote_write.settings import EndpointConfig, endpoint_name, redacted_url
from agent.remote_write.wal import Position, Record, Wal

log = logging.getLogger("hostagent.remote_write")

T = TypeVar("T")
RETRY_AFTER_CAP = 300.0
Outcome = Literal["sent", "retry", "refused"]
Batches = Sequence[Batch] | Callable[[], Sequence[Batch]]


@dataclass
class Counters:
    samples_sent: int = 0
    samples_failed: int = 0  # refused by the receiver (4xx other than 429): given up on
    samples_retried: int = 0
    samples_relabel_dropped: int = 0
    requests: int = 0
    bytes_sent: int = 0
    metadata_sent: int = 0
    highest_timestamp: float = 0.0  # newest sample queued, seconds
    highest_sent_timestamp: float = 0.0
    last_success: float = 0.0  # Unix time of the last delivered request


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: a number of seconds or an HTTP date."""
    if not value:
        return None
    if value.strip().isdigit():
        return min(float(value.strip()), RETRY_AFTER_CAP)
    with contextlib.suppress(TypeError, ValueError):
        when = email.utils.parsedate_to_datetime(value)
        return min(max(0.0, when.timestamp() - time.time()), RETRY_AFTER_CAP)
    return None


def ssl_context(endpoint: EndpointConfig) -> ssl.SSLContext | None:
    if not endpoint.url.startswith("https:"):
        return None
    tls = endpoint.tls_config
    context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
    if tls.cert_file is not None and tls.key_file is not None:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    if tls.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class Queue:
    def __init__(self, endpoint: EndpointConfig, directory: Path) -> None:
        self.endpoint = endpoint
        self.name = endpoint_name(endpoint)
        self.url = redacted_url(endpoint.url)
        self.queue = endpoint.queue_config
        self.relabeler = Relabeler(endpoint.write_relabel_configs)
        self.encoder = Encoder(self.relabeler, self.queue.shards,
                               self.queue.max_samples_per_send)
        wal = endpoint.wal
        self.wal = Wal(directory / self.name, wal.max_bytes, wal.segment_bytes, wal.fsync,
                       wal.fsync_interval)
        self.counters = Counters()
        self.last_error: str | None = None
        self.failing_since: float | None = None  # Unix time delivery started failing
        self._io = ThreadPoolExecutor(1, thread_name_prefix=f"remote-write-{self.name}")
        self._new_data = asyncio.Event()
        self._due_from = 0.0  # monotonic time the oldest unsent data became pending
        self._unread = 0  # samples written and not yet read for sending
        self._session: aiohttp.ClientSession | None = None
        self._ssl = ssl_context(endpoint)
        self._has_credentials = (endpoint.bearer_token_file is not None
                                 or endpoint.basic_auth is not None)
        self._tasks: list[asyncio.Task[None]] = []

    async def _in_thread(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    async def open(self) -> None:
        await self._in_thread(self.wal.open)
        self._unread = self.wal.pending_samples
        if self._unread:
            self._due_from = time.monotonic()
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else True,
                                           limit=max(self.queue.shards, 1) + 1),
            timeout=aiohttp.ClientTimeout(total=self.endpoint.remote_timeout))

    # Writing side (the pusher)

    def _write(self, batches: Batches) -> tuple[Sequence[Batch], int, int, int]:
        """In the WAL's thread: (build,) encode and write. (the batches, samples written,
        samples relabelling dropped, newest timestamp written in ms)."""
        if callable(batches):
            batches = batches()
        records, dropped = self.encoder.encode(batches)
        if records:
            self.wal.append(records)
        return (batches, sum(r.samples for r in records), dropped,
                max((r.timestamp_ms for r in records), default=0))

    async def append(self, batches: Batches) -> Sequence[Batch]:
        """Queue the batches' samples (and stale markers) durably: one trip to the WAL's
        thread however many sources and series. Given a function, it is called there to
        build them. Returns the batches."""
        result: tuple[Sequence[Batch], int, int, int] = await self._in_thread(self._write,
                                                                             batches)
        built, written, dropped, newest = result
        self.counters.samples_relabel_dropped += dropped
        if not written:
            return built
        self._unread += written
        self.counters.highest_timestamp = max(self.counters.highest_timestamp, newest / 1000)
        if self._due_from == 0.0:
            self._due_from = time.monotonic()
        self._new_data.set()
        return built

    # Sending side

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._send_loop(), name=f"rw-{self.name}"))

    async def _send_loop(self) -> None:
        capacity = self.queue.shards * self.queue.max_samples_per_send
        deadline = self.queue.batch_send_deadline
        while True:
            # The WAL is read only when a wave is due: full, or its oldest sample has waited
            # for the deadline. `_unread` may count samples the disk budget dropped since
            # (an early read then finds fewer), never fewer than there are.
            wait = self._due_from + deadline - time.monotonic()
            if self._unread <= 0 or (self._unread < capacity and wait > 0):
                self._new_data.clear()
                if self._unread <= 0:
                    self._due_from = 0.0
                    await self._new_data.wait()
                else:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wait):
                            await self._new_data.wait()
                continue
            records, end = await self._in_thread(self.wal.read, capacity)
            if not records:
                self._unread = 0
                continue
            self.wal.in_flight = end
            await self._send_wave(records)
            self._unread = await self._in_thread(self._ack, end)
            self.wal.in_flight = None
            # What arrived meanwhile has waited since the wave was read, at least.
            self._due_from = time.monotonic() if self._unread > 0 else 0.0

    def _ack(self, end: Position) -> int:
        self.wal.ack(end)
        return self.wal.pending_samples

    async def _send_wave(self, records: list[Record]) -> None:
        by_shard: dict[int, list[Record]] = {}
        for record in records:
            by_shard.setdefault(record.shard, []).append(record)
        await asyncio.gather(*(self._send_shard(part) for part in by_shard.values()))

    async def _send_shard(self, records: list[Record]) -> None:
        limit = self.queue.max_samples_per_send
        batch: list[Record] = []
        for record in records:
            if batch and sum(r.samples for r in batch) + record.samples > limit:
                await self._deliver(batch)
                batch = []
            batch.append(record)
        if batch:
            await self._deliver(batch)

    async def _deliver(self, batch: list[Record]) -> None:
        """Send one request until it is delivered or refused, backing off between tries."""
        samples = sum(r.samples for r in batch)
        if len(batch) == 1:
            body = batch[0].payload
        else:
            # Concatenated WriteRequests are one WriteRequest with every series of each.
            body = wire.compress(b"".join(wire.decompress(r.payload) for r in batch))
        backoff = self.queue.min_backoff
        while True:
            outcome, delay = await self._post(body, samples)
            if outcome == "sent":
                self.counters.samples_sent += samples
                self.counters.bytes_sent += len(body)
                self.counters.last_success = time.time()
                self.counters.highest_sent_timestamp = max(
                    self.counters.highest_sent_timestamp,
                    max(r.timestamp_ms for r in batch) / 1000.0)
                self.failing_since = None
                return
            if outcome == "refused":
                self.counters.samples_failed += samples
                return
            self.counters.samples_retried += samples
            if self.failing_since is None:
                self.failing_since = time.time()
            if delay is None:
                delay = random.uniform(backoff / 2, backoff)
                backoff = min(backoff * 2, self.queue.max_backoff)
            await asyncio.sleep(delay)

    async def _post(self, body: bytes, samples: int) -> tuple[Outcome, float | None]:
        assert self._session is not None
        headers = {**self.endpoint.headers, **wire.HEADERS}
        auth = None
        try:
            credentials = await self._in_thread(self._credentials) \
                if self._has_credentials else None
        except OSError as exc:
            self._failed(f"cannot read credentials: {exc.strerror}")
            return "retry", None
        if isinstance(credentials, aiohttp.BasicAuth):
            auth = credentials
        elif credentials is not None:
            headers["Authorization"] = f"Bearer {credentials}"
        self.counters.requests += 1
        try:
            async with self._session.post(self.endpoint.url, data=body, headers=headers,
                                          auth=auth, allow_redirects=False) as response:
                detail = (await response.content.read(512)).decode("utf-8", "replace")
                status = response.status
                retry_after = _retry_after(response.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._failed(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
            return "retry", None
        if 200 <= status < 300:
            self.last_error = None
            return "sent", None
        message = f"HTTP {status}: {detail.strip()[:200]}"
        if (status == 429 and self.queue.retry_on_http_429) or status >= 500:
            self._failed(message)
            return "retry", retry_after if status == 429 else None
        self._failed(message)
        log.error("remote write: receiver refused a batch, dropped",
                  extra=kv(remote_name=self.name, url=self.url, samples=samples, err=message))
        return "refused", None

    def _failed(self, message: str) -> None:
        if message != self.last_error:
            log.warning("remote write: send failed, will retry",
                        extra=kv(remote_name=self.name, url=self.url, err=message))
        self.last_error = message

    def _credentials(self) -> aiohttp.BasicAuth | str | None:
        """Read per request so rotated secrets take effect without a reload."""
        endpoint = self.endpoint
        if endpoint.bearer_token_file is not None:
            return endpoint.bearer_token_file.read_text().strip()
        if endpoint.basic_auth is not None:
            auth = endpoint.basic_auth
            password = auth.password or ""
            if auth.password_file is not None:
                password = auth.password_file.read_text().strip()
            return aiohttp.BasicAuth(auth.username, password)
        return None

    async def send_metadata(self, entries: list[tuple[str, str, str, str]]) -> None:
        """Best effort, as Prometheus does: not queued on disk; a few tries, then the next
        interval sends everything again."""
        limit = self.queue.max_samples_per_send
        for start in range(0, len(entries), limit):
            chunk = entries[start:start + limit]
            body = wire.compress(wire.encode_metadata(chunk))
            for attempt in range(3):
                outcome, delay = await self._post(body, 0)
                if outcome == "sent":
                    self.counters.metadata_sent += len(chunk)
                    break
                if outcome == "refused":
                    return
                await asyncio.sleep(delay if delay is not None
                                    else self.queue.min_backoff * 2 ** attempt)

    # State

    async def pending(self) -> tuple[int, int, int]:
        """(pending samples, pending bytes, bytes on disk), asked of the WAL's own thread."""
        state: tuple[int, int, int] = await self._in_thread(self.wal.state)
        return state

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()
        await self._in_thread(self.wal.close)
        self._io.shutdown(wait=True)

