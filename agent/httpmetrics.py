"""Request metrics for every HTTP endpoint: a count and a latency histogram per handler and
status code, recorded by one aiohttp middleware and read out as metric families.

Recording is a lock, a bisect and two additions per request; nothing is rendered per request.
The agent publishes these families with its runtime collector (as fresh as that collector's
interval), the relay renders them at scrape time.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
           10.0)
# Requests that matched no route share one label value, so probing paths cannot add series.
UNMATCHED = "other"
# node_exporter (promhttp) counts its /metrics responses under this name, with these codes
# present from the start; alerts written against it keep working.
PROMHTTP_HANDLER = "/metrics"
PROMHTTP_CODES = ("200", "500", "503")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# A handler that could not deliver its whole reply sets request[CUT_OFF] to one of REASONS:
# things any client can cause, so they are counted, not logged above debug.
CUT_OFF = web.RequestKey("hostagent_cut_off", str)
REASONS = ("client_gone", "write_timeout")


def _handler_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    if resource is not None:
        return resource.canonical
    # No route: an unknown path, or a known fixed path with the wrong method (405).
    path = request.path
    if any(r.canonical == path for r in request.app.router.resources()):
        return path
    return UNMATCHED


class RequestMetrics:
    """Written on the event loop, read from any thread (the runtime collector's worker)."""

    def __init__(self, prefix: str = "hostagent", promhttp: bool = True) -> None:
        self._prefix = prefix
        self._promhttp = promhttp
        self._lock = threading.Lock()
        # (handler, code) -> per-bucket counts (the last is +Inf) and the sum of durations
        self._series: dict[tuple[str, str], tuple[list[int], list[float]]] = {}
        self._cut_off = dict.fromkeys(REASONS, 0)

    def observe(self, handler: str, code: int, seconds: float) -> None:
        index = bisect.bisect_left(BUCKETS, seconds)
        key = (handler, str(code))
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = ([0] * (len(BUCKETS) + 1), [0.0])
            series[0][index] += 1
            series[1][0] += seconds

    def middleware(self) -> Middleware:
        @web.middleware
        async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
            start = time.perf_counter()
            code = 500
            try:
                response = await handler(request)
                code = response.status
                return response
            except web.HTTPException as exc:
                code = exc.status
                raise
            finally:
                self.observe(_handler_name(request), code, time.perf_counter() - start)
                if (reason := request.get(CUT_OFF)) is not None:
                    with self._lock:
                        self._cut_off[reason] += 1

        return record

    def collect(self) -> list[Metric]:
        with self._lock:
            series = sorted((key, list(counts), total[0])
                            for key, (counts, total) in self._series.items())
            cut_off = dict(self._cut_off)
        requests = CounterMetricFamily(
            f"{self._prefix}_http_requests", "HTTP requests answered, by handler and status code.",
            labels=["handler", "code"])
        duration = HistogramMetricFamily(
            f"{self._prefix}_http_request_duration_seconds",
            "Time from receiving a request to returning its response, by handler and status code.",
            labels=["handler", "code"])
        scrapes = CounterMetricFamily(
            "promhttp_metric_handler_requests", "Total number of scrapes by HTTP status code.",
            labels=["code"])
        scrape_codes = dict.fromkeys(PROMHTTP_CODES, 0)
        bounds = [*map(floatToGoString, BUCKETS), "+Inf"]
        for (handler, code), counts, total in series:
            count = sum(counts)
            requests.add_metric([handler, code], count)
            cumulative, running = [], 0
            for bound, n in zip(bounds, counts, strict=True):
                running += n
                cumulative.append((bound, float(running)))
            duration.add_metric([handler, code], cumulative, total)
            if handler == PROMHTTP_HANDLER:
                scrape_codes[code] = scrape_codes.get(code, 0) + count
        for code, count in sorted(scrape_codes.items()):
            scrapes.add_metric([code], count)
        cut = CounterMetricFamily(
            f"{self._prefix}_http_responses_cut_off",
            "Replies not delivered whole: the client went away (client_gone) or read slower "
            "than web.write_timeout allows (write_timeout).", labels=["reason"])
        for reason, count in cut_off.items():
            cut.add_metric([reason], count)
        return [requests, duration, *([scrapes] if self._promhttp else []), cut]
