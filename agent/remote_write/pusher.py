"""Feeds the remote write queues from the registry: every snapshot a collector or the SSH worker
publishes is queued once, stamped with its collection time; a snapshot not republished for
`resend_interval` is queued again at the current time (what a scrape would see), so its series
never go stale at the receiver. Reads families, never the exposition's bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from agent.exposition import policy
from agent.exposition.encoding import labelled
from agent.exposition.registry import Registry, Snapshot, TargetSnapshot
from agent.logs import kv
from agent.remote_write.encode import Batch
from agent.remote_write.queue import Queue
from agent.remote_write.settings import RemoteWriteConfig

log = logging.getLogger("hostagent.remote_write")

SNAPSHOT_NAME = "remote_write"
SSH_PREFIX = "ssh:"
# The agent's own series (hostagent_collector_*, node_scrape_collector_*, process_*, python_*):
# what the renderer adds to /metrics, pushed as one more source, at most this often.
OWN_SOURCE = "hostagent"
OWN_MIN_INTERVAL = 0.9  # once per tick of 1 s collectors
FEED_COALESCE = 0.02
# The agent's own families given the families the clash check dropped per source.
OwnFamilies = Callable[[Mapping[str, int]], Sequence[Metric]]


def default_external_labels(listen_address: str, hostname: str | None = None
                            ) -> dict[str, str]:
    """instance and job as a scrape of this agent would set them."""
    port = listen_address.rpartition(":")[2]
    return {"instance": f"{hostname or socket.gethostname()}:{port}", "job": "hostagent"}


def metadata_of(families: Iterable[Metric]) -> list[tuple[str, str, str, str]]:
    """(family name, type, help, unit) per family: the OpenMetrics family names Prometheus
    records when it scrapes the agent."""
    seen: dict[str, tuple[str, str, str, str]] = {}
    for family in families:
        seen.setdefault(family.name, (family.name, family.type, family.documentation,
                                      family.unit))
    return [seen[name] for name in sorted(seen)]


class Pusher:
    def __init__(self, config: RemoteWriteConfig, registry: Registry, listen_address: str,
                 metrics_interval: float = 5.0, poll_interval: float = 1.0,
                 own: OwnFamilies | None = None) -> None:
        """own: the agent's own families, as the renderer builds them for /metrics (called in a
        worker thread, at most once a tick)."""
        self.config = config
        self.registry = registry
        self.external = {**default_external_labels(listen_address), **config.external_labels}
        self.queues = [Queue(endpoint, Path(config.directory))
                       for endpoint in config.endpoints]
        self.metrics_interval = metrics_interval
        self.poll_interval = poll_interval
        self._seen: dict[str, tuple[Snapshot, float]] = {}  # name -> (snapshot, queued at)
        self._targets: dict[str, tuple[TargetSnapshot, Snapshot]] = {}
        self._stamps: dict[str, int] = {}  # source -> last timestamp queued, milliseconds
        self._tasks: list[asyncio.Task[None]] = []
        self.own = own
        self._own_fed = 0.0
        self._metrics_at = 0.0  # monotonic time the queues' series were last published
        self._clean_key: tuple[object, ...] | None = None  # sources the clash check kept whole
        self._own_families: Sequence[Metric] = ()

    async def start(self) -> None:
        opened: list[Queue] = []
        try:
            for queue in self.queues:
                await queue.open()
                opened.append(queue)
        except OSError as exc:
            for queue in opened:
                await queue.stop()
            raise RuntimeError(f"remote_write: cannot open the queue under "
                               f"{self.config.directory}: {exc.strerror or exc}") from None
        for queue in self.queues:
            queue.start()
            log.info("remote write queue open", extra=kv(
                remote_name=queue.name, url=queue.url, pending_samples=queue.wal.pending_samples))
        await self.publish_metrics()
        self._tasks = [asyncio.create_task(self._feed(), name="rw-feed")]
        self._tasks += [asyncio.create_task(self._metadata(q), name=f"rw-metadata-{q.name}")
                        for q in self.queues if q.endpoint.metadata_config.send]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for queue in self.queues:
            await queue.stop()

    # Feeding

    async def _feed(self) -> None:
        while True:
            # The renderer clears `changed`; the poll interval catches what a wake-up missed.
            # asyncio.timeout, not wait_for: no task of its own per wait, on every tick.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    await self.registry.changed.wait()
            if time.monotonic() - self._metrics_at >= self.metrics_interval:
                # Now, while the renderer coalesces the collectors' snapshots: one render for
                # both, not one more of the whole exposition for the queues' series alone.
                await self.publish_metrics()
            # Collectors due on one tick finish together: one feed, one trip to each queue's
            # thread for most of them. Short: a snapshot not yet in the queue is lost to a kill.
            await asyncio.sleep(FEED_COALESCE)
            try:
                await self.feed_once()
            except Exception as exc:  # a bad family must not stop the push
                log.error("remote write: queuing samples failed", extra=kv(err=repr(exc)))

    def _stamp(self, source: str, seconds: float) -> int:
        """Milliseconds, strictly increasing per source: a receiver refuses a whole request
        over one sample older than its series' newest."""
        ms = max(int(seconds * 1000), self._stamps.get(source, -1) + 1)
        self._stamps[source] = ms
        return ms

    def _base(self, source: str) -> Mapping[str, str]:
        if source.startswith(SSH_PREFIX):
            return {**self.external, "instance": source.removeprefix(SSH_PREFIX)}
        return self.external

    def _sources(self) -> dict[str, Snapshot]:
        """The local snapshots, and each SSH target's series (every module, with its labels)
        as a snapshot named "ssh:<target>"; the same object while the target's round is."""
        out = dict(self.registry.snapshots)
        targets = self.registry.targets
        for name, target in targets.items():
            cached = self._targets.get(name)
            if cached is None or cached[0] is not target:
                families = labelled(target.all_families(), target.labels)
                cached = self._targets[name] = (
                    target, Snapshot(SSH_PREFIX + name, tuple(families), target.timestamp))
            out[SSH_PREFIX + name] = cached[1]
        for name in [n for n in self._targets if n not in targets]:
            del self._targets[name]
        return out

    def _exposed(self, local: Mapping[str, Snapshot], own: bool
                 ) -> tuple[dict[str, list[Metric]], bool]:
        """In a worker thread: each local source's families as /metrics exposes them (the
        exposition's clash and merge policy), the agent's own under OWN_SOURCE, and whether
        those were built now (asked for, and did not fail)."""
        # The own families take part even when not due, as they always do on /metrics.
        own_families = self._own_families
        if own and self.own is not None:
            try:
                own_families = self.own({})
            except Exception as exc:  # the collectors' series still go
                log.error("remote write: the agent's own series failed", extra=kv(err=repr(exc)))
                own = False
        sources: list[tuple[str, Sequence[Metric]]] = [(OWN_SOURCE, own_families)]
        sources += [(n, s.families) for n, s in sorted(local.items())
                    if n not in policy.YIELDING]
        sources += [(n, s.families) for n, s in sorted(local.items()) if n in policy.YIELDING]
        # The check costs as much as encoding the samples; its outcome changes only with the
        # family names (and the type, help and unit of user-supplied families: built-in ones
        # keep theirs), and it almost never drops.
        key = tuple((name, tuple([(f.name, f.type, f.documentation, f.unit) for f in families]
                                 if name in policy.YIELDING else [f.name for f in families]))
                    for name, families in sources if families)
        if key == self._clean_key:
            return {name: list(families) for name, families in sources}, own
        plan = policy.arrange(sources)
        self._clean_key = None if plan.dropped else key
        if plan.dropped and own and self.own is not None:
            with contextlib.suppress(Exception):  # failed a moment ago if it fails now
                policy.replace(plan, OWN_SOURCE, self.own(plan.dropped))
        return plan.exposed, own

    async def feed_once(self, now: float | None = None) -> int:
        """Queue every new or due snapshot, stale markers for every snapshot gone, and the
        agent's own series with them; returns how many snapshots were queued."""
        now = time.time() if now is None else now
        sources = self._sources()
        due: list[tuple[str, float]] = []
        for name, snapshot in sources.items():
            previous = self._seen.get(name)
            if previous is None or previous[0] is not snapshot:
                due.append((name, snapshot.timestamp))
            elif now - previous[1] >= self.config.resend_interval:
                due.append((name, now))
            else:
                continue
            self._seen[name] = (snapshot, now)
        gone = [n for n in self._seen if n not in sources]
        if not due and not gone:
            return 0
        own = self.own is not None and now - self._own_fed >= OWN_MIN_INTERVAL
        if own:
            self._own_fed = now
        local = {n: s for n, s in sources.items() if not n.startswith(SSH_PREFIX)}
        stamped = [(name, self._base(name), self._stamp(name, stamp)) for name, stamp in due]
        ended = [(name, self._base(name), self._stamp(name, now)) for name in gone]
        for name in gone:  # a failed collector, a removed SSH target: its series end now
            del self._seen[name]
        own_stamp = self._stamp(OWN_SOURCE, now) if own else 0

        def batches() -> list[Batch]:
            # In the first queue's thread: the families' arrangement, then its write, in one
            # trip (the loop's hand-offs to threads cost more than this work).
            exposed, fresh = self._exposed(local, own)
            out = [Batch(name, base, exposed[name] if name in exposed
                         else sources[name].families, ms) for name, base, ms in stamped]
            out += [Batch(name, base, None, ms) for name, base, ms in ended]
            if fresh:
                self._own_families = exposed[OWN_SOURCE]
                out.append(Batch(OWN_SOURCE, self.external, exposed[OWN_SOURCE], own_stamp))
            return out

        if self.queues:
            built = await self.queues[0].append(batches)
            for queue in self.queues[1:]:
                await queue.append(built)
        return len(due)

    async def _metadata(self, queue: Queue) -> None:
        while True:
            entries = metadata_of([*(f for s in self._sources().values() for f in s.families),
                                   *self._own_families])
            if entries:
                await queue.send_metadata(entries)
            await asyncio.sleep(queue.endpoint.metadata_config.send_interval)

    # The queues' own series

    async def publish_metrics(self) -> None:
        self._metrics_at = time.monotonic()
        states = [await queue.pending() for queue in self.queues]
        self.registry.publish(Snapshot.of(SNAPSHOT_NAME, self.families(states)))

    def families(self, states: list[tuple[int, int, int]]) -> list[Metric]:
        labels = ["remote_name", "url"]

        def counter(name: str, doc: str, extra: list[str] | None = None) -> CounterMetricFamily:
            return CounterMetricFamily(f"hostagent_remote_write_{name}", doc,
                                       labels=labels + (extra or []))

        def gauge(name: str, doc: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"hostagent_remote_write_{name}", doc, labels=labels)

        sent = counter("samples", "Samples delivered to the receiver.")
        failed = counter("samples_failed", "Samples the receiver refused (4xx other than 429); "
                         "given up on.")
        retried = counter("samples_retried", "Samples sent again after a 5xx, 429 or "
                          "connection error.")
        dropped = counter("samples_dropped", "Samples never sent: reason=disk_budget when the "
                          "oldest segment went to stay within max_bytes, reason=relabel when "
                          "write_relabel_configs dropped the series.", ["reason"])
        sent_bytes = counter("sent_bytes", "Compressed request bytes delivered.")
        requests = counter("requests", "Requests attempted, including retries.")
        metadata = counter("metadata", "Metadata entries delivered.")
        corrupt = counter("wal_corruptions", "Torn or corrupt records found in the queue's "
                          "segments; the rest of such a segment is skipped.")
        pending = gauge("samples_pending", "Samples on disk not yet delivered.")
        pending_bytes = gauge("pending_bytes", "Bytes on disk not yet delivered.")
        disk = gauge("wal_bytes", "Bytes of the queue's segment files.")
        highest = gauge("highest_timestamp_seconds", "Newest sample timestamp queued.")
        highest_sent = gauge("highest_sent_timestamp_seconds",
                             "Newest sample timestamp delivered.")
        lag = gauge("lag_seconds", "How far delivery is behind the newest queued sample.")
        last_success = gauge("last_success_timestamp_seconds",
                             "Unix time of the last delivered request.")
        shards = gauge("shards", "Parallel senders.")
        for queue, (n_pending, n_bytes, n_disk) in zip(self.queues, states, strict=True):
            key = [queue.name, queue.url]
            c = queue.counters
            sent.add_metric(key, c.samples_sent)
            failed.add_metric(key, c.samples_failed)
            retried.add_metric(key, c.samples_retried)
            dropped.add_metric([*key, "disk_budget"], queue.wal.stats.dropped_samples)
            dropped.add_metric([*key, "relabel"], c.samples_relabel_dropped)
            sent_bytes.add_metric(key, c.bytes_sent)
            requests.add_metric(key, c.requests)
            metadata.add_metric(key, c.metadata_sent)
            corrupt.add_metric(key, queue.wal.stats.corrupt_segments)
            pending.add_metric(key, n_pending)
            pending_bytes.add_metric(key, n_bytes)
            disk.add_metric(key, n_disk)
            highest.add_metric(key, c.highest_timestamp)
            highest_sent.add_metric(key, c.highest_sent_timestamp)
            behind = c.highest_timestamp - c.highest_sent_timestamp if n_pending else 0.0
            lag.add_metric(key, max(0.0, behind))
            last_success.add_metric(key, c.last_success)
            shards.add_metric(key, queue.queue.shards)
        return [sent, failed, retried, dropped, sent_bytes, requests, metadata, corrupt,
                pending, pending_bytes, disk, highest, highest_sent, lag, last_success, shards]

    # /health

    def status(self, now: float | None = None) -> tuple[bool, dict[str, Any]]:
        """(degraded, per-queue report): degraded when a queue has failed to deliver for
        longer than `degraded_after`."""
        now = time.time() if now is None else now
        degraded = False
        report = {}
        for queue in self.queues:
            failing = queue.failing_since
            failing_for = None if failing is None else round(now - failing, 3)
            unhealthy = failing_for is not None and failing_for > self.config.degraded_after
            degraded |= unhealthy
            c = queue.counters
            report[queue.name] = {
                "url": queue.url,
                "healthy": not unhealthy,
                "failing_seconds": failing_for,
                "last_error": queue.last_error,
                "last_success_age_seconds": round(now - c.last_success, 3)
                if c.last_success else None,
                "samples_sent": c.samples_sent,
                "samples_failed": c.samples_failed,
                "samples_dropped": queue.wal.stats.dropped_samples,
            }
        return degraded, report
