"""Request metrics: every endpoint of the real agent counted per handler and status code."""

from __future__ import annotations

import asyncio

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from agent.agent import Agent
from agent.config import Config
from agent.httpmetrics import RequestMetrics
from tests.test_runtime import exposition, promtool_problems
from tests.test_web import running, wait_ready


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_histogram_buckets_and_promhttp_alias() -> None:
    metrics = RequestMetrics()
    metrics.observe("/metrics", 200, 0.0004)
    metrics.observe("/metrics", 200, 0.3)
    metrics.observe("/metrics", 503, 0.0001)
    metrics.observe("/-/ready", 503, 20.0)
    found = samples(exposition(metrics.collect()).decode())
    ok = (("code", "200"), ("handler", "/metrics"))
    assert found[("hostagent_http_requests_total", ok)] == 2
    assert found[("hostagent_http_request_duration_seconds_bucket", (*ok, ("le", "0.0005")))] == 1
    assert found[("hostagent_http_request_duration_seconds_bucket", (*ok, ("le", "0.25")))] == 1
    assert found[("hostagent_http_request_duration_seconds_bucket", (*ok, ("le", "0.5")))] == 2
    assert found[("hostagent_http_request_duration_seconds_count", ok)] == 2
    assert abs(found[("hostagent_http_request_duration_seconds_sum", ok)] - 0.3004) < 1e-9
    slow = (("code", "503"), ("handler", "/-/ready"))
    assert found[("hostagent_http_request_duration_seconds_bucket", (*slow, ("le", "10.0")))] == 0
    assert found[("hostagent_http_request_duration_seconds_bucket", (*slow, ("le", "+Inf")))] == 1
    # node_exporter's name for the /metrics handler, its three codes present from the start
    assert found[("promhttp_metric_handler_requests_total", (("code", "200"),))] == 2
    assert found[("promhttp_metric_handler_requests_total", (("code", "503"),))] == 1
    assert found[("promhttp_metric_handler_requests_total", (("code", "500"),))] == 0
    assert promtool_problems(exposition(metrics.collect())) == set()


async def test_agent_counts_every_endpoint() -> None:
    config = Config.model_validate({
        "web": {"listen_address": "127.0.0.1:0"}, "scheduler": {"jitter": 0},
        "collectors": {"runtime": {"interval": 0.1}}})
    agent = Agent(config)
    async with running(agent) as base, aiohttp.ClientSession() as session:
        await wait_ready(session, base)
        for _ in range(3):
            async with session.get(f"{base}/-/healthy") as r:
                assert r.status == 200
        for path in ("/no/such/path", "/another"):
            async with session.get(f"{base}{path}") as r:
                assert r.status == 404
        async with session.post(f"{base}/metrics") as r:
            assert r.status == 405
        async with session.post(f"{base}/-/reload") as r:
            assert r.status == 403
        found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        key = ("hostagent_http_requests_total", (("code", "403"), ("handler", "/-/reload")))
        deadline = asyncio.get_running_loop().time() + 60  # the runtime collector publishes
        while asyncio.get_running_loop().time() < deadline:
            async with session.get(f"{base}/metrics") as r:
                found = samples(await r.text())
            if key in found:
                break
            await asyncio.sleep(0.05)

    def count(handler: str, code: str) -> float:
        return found[("hostagent_http_requests_total", (("code", code), ("handler", handler)))]

    assert count("/-/reload", "403") == 1
    assert count("/-/healthy", "200") == 3
    assert count("other", "404") == 2  # unknown paths share one series
    assert count("/metrics", "405") == 1
    # the scrapes above may not be counted yet (the runtime collector publishes), but both
    # names always agree
    scrapes = found.get(("hostagent_http_requests_total",
                         (("code", "200"), ("handler", "/metrics"))), 0)
    assert scrapes == found[("promhttp_metric_handler_requests_total", (("code", "200"),))]
    assert not any(dict(labels).get("handler", "").startswith(("/no", "/another"))
                   for _, labels in found)
