"""The relay: messages, signing, config errors, and end to end from a real Alertmanager through
the relay process to loopback stand-ins for the robots."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import gzip
import hashlib
import hmac
import json
import re
import signal
import ssl
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import zoneinfo
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from agent.relay.config import Mention
from agent.relay.message import Templates
from agent.relay.notification import PayloadError, parse
from agent.relay.robots import DingTalk, Redactor
from tests.conftest import free_port, require_tool
from tests.pki import CA, bcrypt_hash
from tests.robots import Robots
from tests.test_process import AgentProcess

WECOM_KEY = "wk-7f3c1d2e-a9b8-4c7d-9e6f-5a4b3c2d1e0f"
DING_TOKEN = "dt0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab"
DING_SECRET = "SECa1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5"
SECRETS = (WECOM_KEY, DING_TOKEN, DING_SECRET)


def payload(status: str = "firing", alerts: int = 1, **extra: Any) -> dict[str, Any]:
    items = [{
        "status": status,
        "labels": {"alertname": "HostDown", "severity": "critical", "instance": f"web{i}:9110",
                   "job": "hostagent"},
        "annotations": {"summary": f"web{i} is down", "description": "No scrape for 5m."},
        "startsAt": "2024-03-01T02:03:04.123456789Z",
        "endsAt": "2024-03-01T03:00:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": f"http://prometheus:9090/graph?g0.expr=up{i}",
        "fingerprint": f"{i:016x}",
    } for i in range(alerts)]
    return {"version": "4", "groupKey": '{}:{alertname="HostDown"}', "truncatedAlerts": 0,
            "status": status, "receiver": "oncall", "groupLabels": {"alertname": "HostDown"},
            "commonLabels": {"alertname": "HostDown", "severity": "critical",
                             "job": "hostagent"},
            "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
            "alerts": items, **extra}


def test_message_shows_what_an_operator_needs() -> None:
    templates = Templates(zoneinfo.ZoneInfo("Asia/Shanghai"))
    message = templates.render(parse(payload(alerts=2)), 4096, "@13800000000")
    assert message.title == "[FIRING:2] HostDown"
    text = message.text
    assert text.startswith("### [FIRING:2] HostDown\n")
    assert "**Severity:** critical" in text
    assert "#### Firing (2)" in text and "Resolved" not in text
    assert "web0 is down" in text and "web1 is down" in text and "No scrape for 5m." in text
    assert "instance=web1:9110" in text and "alertname=" not in text
    assert "Started 2024-03-01 10:03:04 CST" in text  # UTC+8
    assert "[source](http://prometheus:9090/graph?g0.expr=up1)" in text
    assert "[Alertmanager](http://alertmanager:9093/#/alerts?receiver=oncall)" in text
    assert text.rstrip().endswith("@13800000000")

    resolved = templates.render(parse(payload("resolved")), 4096)
    assert resolved.title == "[RESOLVED] HostDown"
    assert "#### Resolved (1)" in resolved.text and "resolved 2024-03-01 11:00:00 CST" in (
        resolved.text)


def test_long_groups_are_truncated_into_one_message() -> None:
    templates = Templates(zoneinfo.ZoneInfo("UTC"))
    notification = parse(payload(alerts=200, truncatedAlerts=5))
    message = templates.render(notification, 4096)
    size = len(message.text.encode())
    assert 3000 < size <= 4096
    shown = message.text.count("is down")
    assert 0 < shown < 200
    assert f"… and {200 - shown + 5} more" in message.text
    # a bigger limit shows more
    assert templates.render(notification, 20000).text.count("is down") > shown


def test_template_file_overrides(tmp_path: Path) -> None:
    path = tmp_path / "t.md.j2"
    path.write_text("{{ status }} {{ alerts | map(attribute='fingerprint') | join(',') }}"
                    "{% if omitted %} +{{ omitted }}{% endif %}")
    templates = Templates(zoneinfo.ZoneInfo("UTC"), path)
    three = templates.render(parse(payload(alerts=3)), 4096).text
    assert three == "firing 0000000000000000,0000000000000001,0000000000000002"
    two = templates.render(parse(payload(alerts=3)), 45).text
    assert two == "firing 0000000000000000,0000000000000001 +1"


def test_payload_errors_name_the_field() -> None:
    for body, problem in ((payload(version="3"), "version must be \"4\""),
                          (payload(status="odd"), "status must be firing or resolved"),
                          (payload(alerts=0), "alerts must be a non-empty list"),
                          ([], "the body must be a JSON object")):
        with pytest.raises(PayloadError, match=problem):
            parse(body)


def test_dingtalk_signature_is_the_documented_one() -> None:
    robot = DingTalk("https://oapi.dingtalk.com/robot/send", DING_TOKEN, DING_SECRET)
    url = urllib.parse.urlsplit(robot.url(now_ms=1700000000000))
    query = urllib.parse.parse_qs(url.query)
    # DingTalk's own example: quote_plus(b64encode(hmac_sha256(secret, f"{ts}\n{secret}")))
    digest = hmac.new(DING_SECRET.encode(), f"1700000000000\n{DING_SECRET}".encode(),
                      hashlib.sha256).digest()
    assert urllib.parse.quote_plus(query["sign"][0]) == urllib.parse.quote_plus(
        base64.b64encode(digest))
    assert query["access_token"] == [DING_TOKEN] and query["timestamp"] == ["1700000000000"]
    assert "sign" not in DingTalk("u", DING_TOKEN, None).url()
    mention = Mention(mobiles=["13800000000"], userids=["ops1"])
    assert robot.mention_line(mention) == "@13800000000 @ops1"


def test_redactor_removes_secrets_and_queries() -> None:
    redact = Redactor([DING_TOKEN, DING_SECRET])
    text = redact(f"Cannot connect to http://x/robot/send?access_token={DING_TOKEN}&sign=abc "
                  f"token {DING_TOKEN} secret {urllib.parse.quote_plus(DING_SECRET)}")
    assert DING_TOKEN not in text and "sign=abc" not in text
    assert text == "Cannot connect to http://x/robot/send?<redacted> token <secret> secret <secret>"


# The relay process ------------------------------------------------------------------------

class Lab:
    """Robots, secret files and a relay config in tmp_path; start() runs `hostagent relay`."""

    def __init__(self, tmp_path: Path, robots: Robots) -> None:
        self.tmp = tmp_path
        self.robots = robots
        secrets = tmp_path / "secrets"
        secrets.mkdir()
        for name, value in (("wecom.key", WECOM_KEY), ("ding.token", DING_TOKEN),
                            ("ding.secret", DING_SECRET)):
            (secrets / name).write_text(value + "\n")
        (secrets / "wrong.secret").write_text("SECwrong\n")
        robots.wecom_keys.add(WECOM_KEY)
        robots.dingtalk[DING_TOKEN] = DING_SECRET
        limit = {"messages": robots.messages, "interval": robots.interval}
        self.config: dict[str, Any] = {
            "listen_address": "127.0.0.1:0", "timezone": "Asia/Shanghai",
            "response_timeout": 1, "retry": {"initial": 0.2, "max": 0.5, "deadline": 1.5},
            "routes": [
                {"name": "ops", "wecom": {"key_file": str(secrets / "wecom.key"),
                                          "url": robots.base + "/cgi-bin/webhook/send",
                                          "rate_limit": limit},
                 "mention": {"userids": ["ops1"], "mobiles": ["13900000000"]}},
                {"name": "oncall", "dingtalk": {"token_file": str(secrets / "ding.token"),
                                                "secret_file": str(secrets / "ding.secret"),
                                                "url": robots.base + "/robot/send",
                                                "rate_limit": limit},
                 "mention": {"mobiles": ["13800000000"]}},
                {"name": "badsign", "dingtalk": {"token_file": str(secrets / "ding.token"),
                                                 "secret_file": str(secrets / "wrong.secret"),
                                                 "url": robots.base + "/robot/send"}},
            ]}
        self.relay: AgentProcess | None = None

    def write(self) -> Path:
        path = self.tmp / "relay.yml"
        path.write_text(yaml.safe_dump(self.config))
        return path

    def start(self) -> AgentProcess:
        self.relay = AgentProcess("relay", "--config", str(self.write()), "--log.level", "debug")
        return self.relay

    def post(self, route: str, body: Any) -> tuple[int, str]:
        assert self.relay is not None
        request = urllib.request.Request(
            f"http://{self.relay.address}/alertmanager/{route}", data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        assert self.relay is not None
        status, body = self.relay.get("/metrics")
        assert status == 200
        self.last_metrics = body.decode()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for f in text_string_to_metric_families(self.last_metrics) for s in f.samples}

    def close(self) -> str:
        """Stops the relay; returns everything it logged."""
        if self.relay is None:
            return ""
        self.relay.proc.terminate()
        self.relay.proc.wait(15)
        time.sleep(0.1)
        while not self.relay.lines.empty():
            self.relay.log.append(self.relay.lines.get())
        return "".join(self.relay.log)


@pytest.fixture
def robots() -> Iterator[Robots]:
    fake = Robots(messages=3, interval=2.0)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def lab(tmp_path: Path, robots: Robots) -> Iterator[Lab]:
    made = Lab(tmp_path, robots)
    yield made
    log = made.close()
    for secret in SECRETS:  # whatever the test did, no secret reached the log or /metrics
        assert secret not in log
        assert secret not in getattr(made, "last_metrics", "")


def wait_for(check: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_relay_delivers_signs_mentions_and_never_twice(lab: Lab, robots: Robots) -> None:
    lab.start()
    assert lab.post("oncall", payload()) == (200, "delivered\n")
    # Alertmanager's retry of the same notification is answered without a second message.
    assert lab.post("oncall", payload()) == (200, "duplicate\n")
    [ding] = robots.bodies(f"dingtalk:{DING_TOKEN}")
    assert ding["msgtype"] == "markdown" and ding["markdown"]["title"] == "[FIRING:1] HostDown"
    assert ding["at"] == {"atMobiles": ["13800000000"], "atUserIds": [], "isAtAll": False}
    assert ding["markdown"]["text"].rstrip().endswith("@13800000000")

    assert lab.post("ops", payload("resolved"))[0] == 200  # no mention when resolved
    assert lab.post("ops", payload())[0] == 200
    wecom = robots.bodies(f"wecom:{WECOM_KEY}")
    assert [b["msgtype"] for b in wecom] == ["markdown", "markdown", "text"]
    assert "[RESOLVED] HostDown" in wecom[0]["markdown"]["content"]
    assert wecom[2]["text"] == {"content": "[FIRING:1] HostDown", "mentioned_list": ["ops1"],
                                "mentioned_mobile_list": ["13900000000"]}

    assert lab.post("nosuch", payload())[0] == 404
    assert lab.post("ops", {"version": "3"}) == (400, 'version must be "4" (Alertmanager\'s '
                                                 "webhook), got '3'\n")
    found = lab.metrics()
    assert found[("hostagent_relay_notifications_total",
                  (("result", "duplicate"), ("route", "oncall")))] == 1
    assert found[("hostagent_relay_notifications_total",
                  (("result", "invalid"), ("route", "ops")))] == 1
    assert found[("hostagent_relay_messages_total",
                  (("result", "delivered"), ("robot", "wecom"), ("route", "ops")))] == 3
    assert found[("hostagent_http_requests_total",
                  (("code", "404"), ("handler", "/alertmanager/{route}")))] == 1
    assert ("hostagent_relay_delivery_duration_seconds_count",
            (("robot", "dingtalk"), ("route", "oncall"))) in found


def test_sighup_applies_new_secrets_and_routes_and_rejects_a_broken_set_whole(
        lab: Lab, robots: Robots) -> None:
    lab.config["response_timeout"] = 10  # the robots' 3 a 2 s limit holds some messages back
    relay = lab.start()
    assert lab.post("ops", payload())[0] == 200
    assert len(robots.bodies(f"wecom:{WECOM_KEY}")) == 2  # markdown, then the mention

    def reload_state() -> tuple[float, float]:
        found = lab.metrics()
        return (found[("hostagent_relay_config_last_reload_successful", ())],
                found[("hostagent_relay_config_last_reload_success_timestamp_seconds", ())])

    assert reload_state()[0] == 1
    # A new key for the ops robot and a new route, applied without a restart.
    new_key = "wk-0a1b2c3d-second-key-4e5f6a7b8c9d"
    robots.wecom_keys.add(new_key)
    (lab.tmp / "secrets" / "wecom2.key").write_text(new_key + "\n")
    lab.config["routes"][0]["wecom"]["key_file"] = str(lab.tmp / "secrets" / "wecom2.key")
    lab.config["routes"].append({**lab.config["routes"][1], "name": "team", "mention": {}})
    lab.write()
    relay.proc.send_signal(signal.SIGHUP)
    relay.wait_for(r"msg=(reloaded) routes=4")
    assert lab.post("ops", payload(groupKey="after-reload"))[0] == 200
    assert len(robots.bodies(f"wecom:{new_key}")) == 2
    assert len(robots.bodies(f"wecom:{WECOM_KEY}")) == 2
    assert lab.post("team", payload(groupKey="team")) == (200, "delivered\n")
    ok, loaded = reload_state()
    assert ok == 1

    # Three problems at once: every one is reported, none of the file is applied.
    running = dict(lab.config)
    lab.config = {**running, "template_file": str(lab.tmp / "missing.md.j2"), "routes": [
        {**running["routes"][0], "wecom": {**running["routes"][0]["wecom"],
                                           "key_file": str(lab.tmp / "missing.key")}},
        {**running["routes"][3], "dingtalk": {**running["routes"][3]["dingtalk"],
                                              "token_file": str(lab.tmp / "missing.token")}}]}
    lab.write()
    relay.proc.send_signal(signal.SIGHUP)
    problems = [relay.wait_for(r'msg="reload rejected, keeping the running config" '
                               r'problem="([^"]+)"') for _ in range(3)]
    assert sorted(problems) == [
        f"routes[0].wecom.key_file: cannot read {lab.tmp}/missing.key: No such file or directory",
        f"routes[1].dingtalk.token_file: cannot read {lab.tmp}/missing.token: "
        "No such file or directory",
        f"template_file: cannot read {lab.tmp}/missing.md.j2: No such file or directory"]
    assert reload_state() == (0, loaded)
    # The running config stays: the new key, the new route, the oncall route.
    assert lab.post("team", payload(groupKey="still")) == (200, "delivered\n")
    assert lab.post("oncall", payload(groupKey="still")) == (200, "delivered\n")
    assert lab.post("ops", payload(groupKey="still"))[0] == 200
    assert len(robots.bodies(f"wecom:{new_key}")) == 4
    # Fixed, it loads again.
    lab.config = running
    lab.write()
    relay.proc.send_signal(signal.SIGHUP)
    relay.wait_for(r"msg=(reloaded) routes=4")
    assert reload_state()[0] == 1


async def test_reload_tells_systemd_ready_once_it_runs_the_new_config(
        lab: Lab, tmp_path: Path) -> None:
    from agent.relay.config import RelayConfig
    from agent.relay.server import Relay
    from agent.systemd import Notifier
    from tests.test_systemd import NotifyListener

    bigger = json.loads(json.dumps(lab.config))
    bigger["routes"].append({**bigger["routes"][1], "name": "team", "mention": {}})
    listener = NotifyListener(tmp_path)
    relay = Relay(RelayConfig.model_validate(lab.config),
                  Notifier({"NOTIFY_SOCKET": listener.path}),
                  source=lambda: RelayConfig.model_validate(bigger))
    task = asyncio.create_task(relay.run())
    try:
        await asyncio.wait_for(relay.started.wait(), 10)
        before = len(listener.messages)
        await relay.reload()
        reloading = await asyncio.to_thread(listener.wait_for, "RELOADING=1", 15, before)
        ready = await asyncio.to_thread(listener.wait_for, "READY=1", 15, reloading + 1)
        assert "STATUS=relaying for 4 routes" in listener.messages[ready][1].split("\n")
    finally:
        relay.request_stop()
        await task
        listener.close()


def test_relay_metrics_are_written_as_the_agents(lab: Lab) -> None:
    """The agent's encoders: Go's number format, families in name order, no _created series;
    OpenMetrics and gzip when asked for."""
    relay = lab.start()
    assert lab.post("ops", payload())[0] == 200

    def get(**headers: str) -> tuple[dict[str, str], bytes]:
        request = urllib.request.Request(f"http://{relay.address}/metrics", headers=headers)
        with urllib.request.urlopen(request, timeout=10) as response:
            return dict(response.headers), response.read()

    headers, body = get()
    text = body.decode()
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "hostagent_relay_config_last_reload_successful 1\n" in text
    assert ('hostagent_relay_messages_total{result="delivered",robot="wecom",route="ops"} 2\n'
            in text)
    assert "_created" not in text
    names = [line.split()[2] for line in text.splitlines() if line.startswith("# HELP ")]
    assert names == sorted(names) and "promhttp_metric_handler_requests_total" in names
    headers, body = get(Accept="application/openmetrics-text; version=1.0.0",
                        **{"Accept-Encoding": "gzip"})
    assert headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert headers["Content-Encoding"] == "gzip"
    text = gzip.decompress(body).decode()
    assert text.endswith("# EOF\n") and text.count("# EOF") == 1
    assert "# TYPE hostagent_relay_messages counter\n" in text


def test_rejection_is_a_5xx_logged_without_secrets(lab: Lab, robots: Robots) -> None:
    relay = lab.start()
    status, _ = lab.post("badsign", payload())
    assert status == 502
    line = relay.wait_for(r"(msg=\"robot rejected the message\".*)")
    assert "errcode 310000: sign not match" in line and "route=badsign" in line
    assert robots.refused == [(f"dingtalk:{DING_TOKEN}", 310000)]
    found = lab.metrics()
    assert found[("hostagent_relay_send_attempts_total",
                  (("outcome", "rejected"), ("robot", "dingtalk"), ("route", "badsign")))] == 1


def test_rate_limit_queues_instead_of_losing(lab: Lab, robots: Robots) -> None:
    lab.config["response_timeout"] = 10
    lab.start()
    import concurrent.futures

    bodies = [payload(groupKey=f"g{i}", alerts=1) for i in range(7)]
    with concurrent.futures.ThreadPoolExecutor(7) as pool:
        answers = list(pool.map(lambda b: lab.post("oncall", b), bodies))
    assert [a[0] for a in answers] == [200] * 7
    got = [r.at for r in robots.accepted]
    assert len(got) == 7 and robots.refused == []
    for i in range(len(got) - 3):  # never more than 3 in any 2 s window
        assert got[i + 3] - got[i] >= 2.0 - 0.05
    found = lab.metrics()
    assert found[("hostagent_relay_rate_limit_waits_total",
                  (("robot", "dingtalk"), ("route", "oncall")))] >= 2


# End to end: Alertmanager (deploy/alertmanager) -> relay -> robots -------

ROOT = Path(__file__).resolve().parent.parent
DEPLOY_ALERTMANAGER = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"


class Server:
    def __init__(self, argv: list[str], base: str) -> None:
        self.base = base
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        wait_for(self.ready, f"{argv[0]} to be ready")

    def ready(self) -> bool:
        assert self.proc.poll() is None, self.proc.stderr.read() if self.proc.stderr else ""
        try:
            with urllib.request.urlopen(f"{self.base}/-/ready", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def post(self, path: str, body: Any) -> None:
        request = urllib.request.Request(f"{self.base}{path}", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def deploy_alertmanager_config(relay: str) -> dict[str, Any]:
    """deploy/alertmanager with the relay's test address and second-scale timers."""
    config = yaml.safe_load(DEPLOY_ALERTMANAGER.read_text())
    config["route"].update(group_wait="0s", group_interval="1s", repeat_interval="1h")
    for route in config["route"]["routes"]:
        route.pop("group_wait", None)
        route.pop("repeat_interval", None)
    for receiver in config["receivers"]:
        for hook in receiver["webhook_configs"]:
            url = urllib.parse.urlsplit(hook["url"])
            assert url.netloc == "127.0.0.1:9111" and url.path.startswith("/alertmanager/")
            hook["url"] = f"http://{relay}{url.path}"
    return config


def test_alertmanager_through_the_relay_loses_and_repeats_nothing(
        lab: Lab, robots: Robots, tmp_path: Path) -> None:
    relay = lab.start()
    config = tmp_path / "alertmanager.yml"
    config.write_text(yaml.safe_dump(deploy_alertmanager_config(relay.address)))
    am_port = free_port()
    am = Server([require_tool("prometheus-alertmanager"), f"--config.file={config}",
                 f"--storage.path={tmp_path / 'am'}", f"--web.listen-address=127.0.0.1:{am_port}",
                 f"--web.external-url=http://127.0.0.1:{am_port}", "--cluster.listen-address=",
                 "--log.level=warn"], f"http://127.0.0.1:{am_port}")
    try:
        # Robots down for a while: the relay retries, answers 5xx, Alertmanager retries too.
        robots.outage_until = time.monotonic() + 4
        now = dt.datetime.now(dt.UTC)
        alerts = [
            {"labels": {"alertname": "HostDown", "severity": "critical", "instance": "web1:9110"},
             "annotations": {"summary": "web1 is down"}},
            {"labels": {"alertname": "HostHighLoad", "severity": "warning",
                        "instance": "web2:9110"},
             "annotations": {"summary": "web2 is busy", "description": "load 12"}},
        ]
        am.post("/api/v2/alerts", [{**a, "startsAt": now.isoformat()} for a in alerts])
        wecom, ding = f"wecom:{WECOM_KEY}", f"dingtalk:{DING_TOKEN}"

        def titles(robot: str) -> list[str]:
            return [b["markdown"]["content"].split("\n")[0] if "content" in b.get(
                "markdown", {}) else b.get("markdown", {}).get("title", b.get("text", {})
                                                               .get("content"))
                    for b in robots.bodies(robot)]

        wait_for(lambda: "### [FIRING:1] HostHighLoad" in titles(wecom)
                 and "[FIRING:1] HostDown" in titles(ding), "firing messages", 60)
        # resolve the two posted alerts
        ended = dt.datetime.now(dt.UTC).isoformat()
        am.post("/api/v2/alerts", [{**a, "startsAt": now.isoformat(), "endsAt": ended}
                                   for a in alerts])
        wait_for(lambda: sum("RESOLVED" in t for t in titles(wecom)) >= 2
                 and any("RESOLVED" in t for t in titles(ding)), "resolved messages", 60)
    finally:
        am.stop()

    wecom_titles = titles(wecom)
    # every alert arrived exactly once per robot and state (no loss, no duplicate)
    for title in ("### [FIRING:1] HostDown", "### [FIRING:1] HostHighLoad",
                  "### [RESOLVED] HostDown", "### [RESOLVED] HostHighLoad"):
        assert wecom_titles.count(title) == 1, wecom_titles
    # mentions follow each firing markdown message as a text message (the ops route's)
    assert wecom_titles.count("[FIRING:1] HostDown") == 1
    assert titles(ding) == ["[FIRING:1] HostDown", "[RESOLVED] HostDown"]
    high_load = next(b["markdown"]["content"] for b in robots.bodies(wecom)
                     if b.get("markdown", {}).get("content", "").startswith(
                         "### [FIRING:1] HostHighLoad"))
    assert "web2 is busy" in high_load and "load 12" in high_load
    assert "**Severity:** warning" in high_load
    assert f"[Alertmanager](http://127.0.0.1:{am_port}/#/alerts?receiver=ops-wecom)" in high_load
    found = lab.metrics()
    retried = sum(v for (name, labels), v in found.items()
                  if name == "hostagent_relay_notifications_total"
                  and dict(labels)["result"] in ("pending", "failed"))
    assert retried >= 1  # Alertmanager was told to retry during the outage
    assert found[("hostagent_relay_send_attempts_total",
                  (("outcome", "transient"), ("robot", "dingtalk"), ("route", "oncall")))] >= 1


def test_a_prometheus_rule_reaches_the_robots(lab: Lab, robots: Robots, tmp_path: Path) -> None:
    """Prometheus evaluates an always-firing rule and sends it to Alertmanager (deploy config),
    which routes it to the relay, which posts it to the WeCom robot."""
    relay = lab.start()
    am_config = tmp_path / "alertmanager.yml"
    am_config.write_text(yaml.safe_dump(deploy_alertmanager_config(relay.address)))
    am_port, prom_port = free_port(), free_port()
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "relay-e2e", "interval": "1s", "rules": [
        {"alert": "RelayEndToEnd", "expr": "vector(1)",
         "labels": {"severity": "warning", "instance": "e2e:9110"},
         "annotations": {"summary": "always firing", "description": "from a rule"}}]}]}))
    prom_config = tmp_path / "prometheus.yml"
    prom_config.write_text(yaml.safe_dump({
        "global": {"evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "alerting": {"alertmanagers": [{"api_version": "v2", "static_configs": [
            {"targets": [f"127.0.0.1:{am_port}"]}]}]}}))
    am = Server([require_tool("prometheus-alertmanager"), f"--config.file={am_config}",
                 f"--storage.path={tmp_path / 'am'}", f"--web.listen-address=127.0.0.1:{am_port}",
                 f"--web.external-url=http://127.0.0.1:{am_port}", "--cluster.listen-address=",
                 "--log.level=warn"], f"http://127.0.0.1:{am_port}")
    prometheus = f"http://127.0.0.1:{prom_port}"
    prom = Server([require_tool("prometheus"), f"--config.file={prom_config}",
                   f"--storage.tsdb.path={tmp_path / 'prom'}",
                   f"--web.listen-address=127.0.0.1:{prom_port}",
                   f"--web.external-url={prometheus}", "--rules.alert.resend-delay=1s",
                   "--log.level=warn"], prometheus)
    wecom = f"wecom:{WECOM_KEY}"

    def message() -> str | None:
        return next((b["markdown"]["content"] for b in robots.bodies(wecom)
                     if "RelayEndToEnd" in b.get("markdown", {}).get("content", "")), None)

    try:
        text = wait_for(message, "the rule's alert at the robot", 60)
    finally:
        prom.stop()
        am.stop()
    assert text.startswith("### [FIRING:1] RelayEndToEnd\n")
    assert "**Severity:** warning" in text and "always firing" in text and "from a rule" in text
    assert f"[source]({prometheus}/graph?g0.expr=vector%281%29" in text
    assert f"[Alertmanager](http://127.0.0.1:{am_port}/#/alerts?receiver=ops-wecom)" in text


def test_alertmanager_reaches_the_relay_over_mutual_tls_with_basic_auth(
        lab: Lab, robots: Robots, tmp_path: Path) -> None:
    """The relay takes the agent's web config file: Alertmanager (a Go TLS client) presents
    its client certificate and http_config's basic_auth; anyone else is refused."""
    password = "am-relay-password-7c1e"
    ca = CA(tmp_path)
    server, client = ca.issue("relay"), ca.issue("alertmanager", client=True)
    web_config = tmp_path / "web.yml"
    web_config.write_text(yaml.safe_dump({
        "tls_server_config": {"cert_file": str(server.cert), "key_file": str(server.key),
                              "client_auth_type": "RequireAndVerifyClientCert",
                              "client_ca_file": str(ca.path)},
        "basic_auth_users": {"alertmanager": bcrypt_hash(password)}}))
    lab.config["web"] = {"config_file": str(web_config)}
    relay = lab.start()
    config = deploy_alertmanager_config(relay.address)
    for receiver in config["receivers"]:
        for hook in receiver["webhook_configs"]:
            hook["url"] = hook["url"].replace("http://", "https://")
            hook["http_config"] = {
                "basic_auth": {"username": "alertmanager", "password": password},
                "tls_config": {"ca_file": str(ca.path), "cert_file": str(client.cert),
                               "key_file": str(client.key)}}
    am_config = tmp_path / "alertmanager.yml"
    am_config.write_text(yaml.safe_dump(config))
    am_port = free_port()
    am = Server([require_tool("prometheus-alertmanager"), f"--config.file={am_config}",
                 f"--storage.path={tmp_path / 'am'}", f"--web.listen-address=127.0.0.1:{am_port}",
                 "--cluster.listen-address=", "--log.level=warn"], f"http://127.0.0.1:{am_port}")
    try:
        am.post("/api/v2/alerts", [{"labels": {"alertname": "HostHighLoad",
                                               "severity": "warning", "instance": "web2:9110"},
                                    "annotations": {"summary": "web2 is busy"}}])
        wait_for(lambda: robots.bodies(f"wecom:{WECOM_KEY}"), "the message over TLS", 30)
    finally:
        am.stop()
    body = robots.bodies(f"wecom:{WECOM_KEY}")[0]  # then the ops route's mention
    assert body["markdown"]["content"].startswith("### [FIRING:1] HostHighLoad")

    def get(path: str, cert: bool = True, auth: str | None = None) -> int:
        context = ssl.create_default_context(cafile=str(ca.path))
        if cert:
            context.load_cert_chain(client.cert, client.key)
        headers = {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()
                   } if auth else {}
        request = urllib.request.Request(f"https://{relay.address}{path}", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10, context=context) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    assert get("/metrics") == 401
    assert get("/metrics", auth="alertmanager:wrong") == 401
    assert get("/metrics", auth=f"alertmanager:{password}") == 200
    with pytest.raises((urllib.error.URLError, ConnectionError)):  # no client certificate
        get("/-/healthy", cert=False)
    with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP: no answer
        relay.get("/-/healthy")
    log = lab.close()
    assert password not in log, log
    assert "tls=True" in log, log


def test_example_config_and_unit(tmp_path: Path) -> None:
    from agent.relay.config import load

    example = ROOT / "systemd" / "hostagent-relay.yml"
    config = load(example)
    assert [r.name for r in config.routes] == ["ops", "oncall"]
    assert config.listen_address.endswith(":9111")
    hooks = [urllib.parse.urlsplit(hook["url"]).path
             for receiver in yaml.safe_load(DEPLOY_ALERTMANAGER.read_text())["receivers"]
             for hook in receiver["webhook_configs"]]
    assert sorted(hooks) == ["/alertmanager/oncall", "/alertmanager/ops"]
    unit = (ROOT / "systemd" / "hostagent-relay.service").read_text()
    assert "hostagent relay --config /etc/hostagent/relay.yml" in unit
    assert "ExecReload=/bin/kill -HUP $MAINPID\n" in unit
    analyze = require_tool("systemd-analyze")
    prefix = str(Path(sys.executable).parent.parent)  # verify needs ExecStart to exist
    installed = tmp_path / "hostagent-relay.service"
    installed.write_text(unit.replace("/usr/local/lib/hostagent", prefix))
    verify = subprocess.run([analyze, "verify", str(installed)], capture_output=True, text=True,
                            timeout=60)
    assert verify.returncode == 0 and verify.stdout + verify.stderr == ""
    security = subprocess.run([analyze, "security", "--offline=true", str(installed)],
                              capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: ([\d.]+)", security.stdout)
    assert match is not None and float(match.group(1)) <= 2.0, security.stdout


def test_check_names_the_unreadable_secret(tmp_path: Path) -> None:
    path = tmp_path / "relay.yml"
    path.write_text(yaml.safe_dump({"routes": [{"name": "ops", "wecom": {
        "key_file": str(tmp_path / "missing.key")}}]}))
    checked = subprocess.run([sys.executable, "-m", "agent", "relay", "--check", "--config",
                              str(path)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 2
    assert checked.stderr == (f"routes[0].wecom.key_file: cannot read {tmp_path}/missing.key: "
                              "No such file or directory\n")
    (tmp_path / "k").write_text("key\n")
    path.write_text(yaml.safe_dump({"routes": [{"name": "ops", "wecom": {
        "key_file": str(tmp_path / "k")}}]}))
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users: {ops: not-a-hash}\n")
    checked = subprocess.run([sys.executable, "-m", "agent", "relay", "--check", "--config",
                              str(path), "--web.config.file", str(web)],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 2
    assert checked.stderr.startswith(f"{web}: basic_auth_users"), checked.stderr
    assert "not-a-hash" not in checked.stderr
    path.write_text(yaml.safe_dump({"routes": [{"name": "a/b"}]}))
    checked = subprocess.run([sys.executable, "-m", "agent", "relay", "--check", "--config",
                              str(path)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 2 and "routes.0.name" in checked.stderr


def test_make_install_puts_the_relay_beside_the_agent_and_leaves_it_off(tmp_path: Path) -> None:
    make = require_tool("make")
    prefix, etc, units = tmp_path / "lib", tmp_path / "etc", tmp_path / "units"
    argv = [make, "-C", str(ROOT), "install-relay", f"PREFIX={prefix}", f"CONFIG_DIR={etc}",
            f"UNIT_DIR={units}"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (etc / "relay.yml").read_text() == (ROOT / "systemd/hostagent-relay.yml").read_text()
    unit = (units / "hostagent-relay.service").read_text()
    assert f"ExecStart={prefix}/bin/hostagent relay --config {etc}/relay.yml\n" in unit
    assert "/usr/local/lib/hostagent" not in unit and "/etc/hostagent/" not in unit
    # An operator's config is kept on a second install.
    (etc / "relay.yml").write_text("routes: []\n")
    assert subprocess.run(argv, capture_output=True, timeout=60).returncode == 0
    assert (etc / "relay.yml").read_text() == "routes: []\n"
    # `make install` installs the relay's files and enables and starts only the agent.
    planned = subprocess.run([make, "-C", str(ROOT), "--dry-run", "install"],
                             capture_output=True, text=True, timeout=60).stdout
    assert "hostagent-relay.service" in planned
    assert [line for line in planned.splitlines()
            if line.startswith(("systemctl enable", "systemctl restart"))] == [
        "systemctl enable hostagent.service", "systemctl restart hostagent.service"]
