"""The relay's own series, in a private registry encoded at scrape time by the agent's
exposition encoders, so the relay's /metrics reads as the agent's."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.metrics_core import Metric

from agent.exposition.formats import OPENMETRICS, OPENMETRICS_EOF, encode
from agent.exposition.selfmetrics import build_info
from agent.exposition.text import header_name
from agent.httpmetrics import RequestMetrics

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class RelayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = RequestMetrics()
        self.registry.register(self.requests)
        for source in (ProcessCollector, GCCollector, PlatformCollector):
            source(registry=self.registry)
        info = build_info()
        self.registry.register(_Static([info]))
        r = self.registry
        self.notifications = Counter(
            "hostagent_relay_notifications", "Alertmanager notifications received, by route and "
            "result (delivered, duplicate, pending, failed, invalid).",
            ["route", "result"], registry=r)
        self.messages = Counter(
            "hostagent_relay_messages", "Robot messages finished, by result (delivered, failed).",
            ["route", "robot", "result"], registry=r)
        self.attempts = Counter(
            "hostagent_relay_send_attempts", "Requests to a robot, by outcome (ok, rate_limited, "
            "transient, rejected).", ["route", "robot", "outcome"], registry=r)
        self.latency = Histogram(
            "hostagent_relay_delivery_duration_seconds", "Time from receiving a message to the "
            "robot accepting it, queueing, rate-limit waits and retries included.",
            ["route", "robot"], buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge(
            "hostagent_relay_queue_depth", "Messages waiting for or in delivery to a robot.",
            ["route", "robot"], registry=r)
        self.rate_limit_waits = Counter(
            "hostagent_relay_rate_limit_waits", "Sends held back to stay within the robot's "
            "messages-per-interval limit.", ["route", "robot"], registry=r)
        self.rate_limit_wait_seconds = Counter(
            "hostagent_relay_rate_limit_wait_seconds", "Time sends were held back by the rate "
            "limit.", ["route", "robot"], registry=r)
        self.reload_ok = Gauge(
            "hostagent_relay_config_last_reload_successful",
            "Whether the last configuration reload succeeded.", registry=r)
        self.reload_time = Gauge(
            "hostagent_relay_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration load.", registry=r)

    def body(self, fmt: str) -> bytes:
        """Every series in one exposition format, families in name order as the agent's."""
        families = sorted(self.registry.collect(), key=header_name)
        body = encode(families, fmt)
        return body + OPENMETRICS_EOF if fmt == OPENMETRICS else body

    def reloaded(self, ok: bool) -> None:
        self.reload_ok.set(1 if ok else 0)
        if ok:
            self.reload_time.set_to_current_time()


class _Static:
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families
