"""Endpoint security against real clients: TLS and its version floor, mTLS, basic auth,
certificate rotation without a restart, a real Prometheus scraping over HTTPS with basic auth,
limits against hostile clients, and a fuzz of every endpoint of the real process."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import socket
import ssl
import string
import threading
import time
import urllib.parse
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from agent.agent import Agent
from agent.config import Config, ConfigError, ConfigSource
from agent.logs import LogfmtFormatter
from agent.scheduler import Job
from tests.conftest import free_port
from tests.pki import CA, Issued, bcrypt_hash, serial_of, write_atomic
from tests.test_deploy_prometheus import Prometheus
from tests.test_process import AgentProcess

USER, PASSWORD = "prometheus", "s3cret-scrape-password"
CHALLENGE = 'Basic realm="hostagent"'
REFUSED = (aiohttp.ClientError, ssl.SSLError, ConnectionError)


class Static:
    def collect(self) -> list[Metric]:
        return [GaugeMetricFamily("static_value", "A constant.", value=1)]


@pytest.fixture
def pki(tmp_path: Path) -> CA:
    return CA(tmp_path)


def web_file(ca: CA, tls: dict[str, Any] | None = None, users: dict[str, str] | None = None,
             headers: dict[str, str] | None = None) -> Path:
    """(Re)write DIR/web.yml; with tls (extra settings, maybe none), TLS with DIR/server.*."""
    content: dict[str, Any] = {}
    if tls is not None:
        if not (ca.directory / "server.crt").exists():
            ca.issue("server")
        content["tls_server_config"] = {"cert_file": "server.crt", "key_file": "server.key",
                                        **tls}
    if users:
        content["basic_auth_users"] = users
    if headers:
        content["http_server_config"] = {"headers": headers}
    path = ca.directory / "web.yml"
    write_atomic(path, yaml.safe_dump(content).encode())
    return path


def agent_for(path: Path | None, **web: Any) -> Agent:
    """An in-process agent on a loopback port with one static collector."""
    config = Config.model_validate({
        "web": {"listen_address": "127.0.0.1:0",
                **({"config_file": str(path)} if path else {}), **web},
        "scheduler": {"jitter": 0}})
    return Agent(config, jobs=[Job("static", Static(), 60, 5)])


@contextlib.asynccontextmanager
async def serving(agent: Agent, poll: float = 0.05) -> AsyncIterator[str]:
    agent.endpoint.poll_interval = poll
    task = asyncio.create_task(agent.run())
    await asyncio.wait_for(agent.started.wait(), 10)
    for _ in range(500):  # every collector has run once: /metrics holds its series
        if agent.health.ready():
            break
        await asyncio.sleep(0.02)
    try:
        yield agent.addresses[0]
    finally:
        agent.request_stop()
        assert await asyncio.wait_for(task, 15) == 0


def client(ca: CA | None = None, cert: Issued | None = None,
           maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca.path if ca else None)
    if cert is not None:
        context.load_cert_chain(cert.cert, cert.key)
    if maximum is not None:
        context.maximum_version = maximum
    return context


async def get(address: str, path: str = "/metrics", context: ssl.SSLContext | None = None,
              auth: tuple[str, str] | None = None, method: str = "GET",
              headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    scheme = "https" if context else "http"
    connector = aiohttp.TCPConnector(ssl=context) if context else aiohttp.TCPConnector()
    headers = {**({"Authorization": basic(*auth)} if auth else {}), **(headers or {})}
    async with aiohttp.ClientSession(connector=connector) as session, session.request(
            method, f"{scheme}://{address}{path}", headers=headers) as response:
        return response.status, response.headers, await response.read()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured record as the agent writes it (logfmt, with fields and tracebacks)."""
    formatter = LogfmtFormatter()
    return "\n".join(formatter.format(record) for record in caplog.records)


async def tls_session(address: str, context: ssl.SSLContext) -> tuple[int, str]:
    """A fresh connection's (server certificate serial, TLS version)."""
    host, port = address.rsplit(":", 1)
    _, writer = await asyncio.open_connection(host, int(port), ssl=context)
    try:
        tls = writer.get_extra_info("ssl_object")
        return serial_of(tls.getpeercert(binary_form=True)), tls.version()
    finally:
        writer.close()
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await writer.wait_closed()


async def eventually(check: Callable[[], Any], what: str, attempts: int = 200) -> None:
    for _ in range(attempts):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def tls11_client(ca: CA) -> ssl.SSLContext:
    """A client that offers TLS 1.1 only; security level 0 so the local OpenSSL lets it."""
    context = client(ca)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1_1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    return context


def accepts_tls11(issued: Issued, ca: CA) -> str:
    """Control: a plain ssl server that allows TLS 1.1 does complete the same client's handshake
    (so when the agent refuses it, the refusal is the agent's floor, not the local library)."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        server.minimum_version = ssl.TLSVersion.TLSv1_1
    server.load_cert_chain(issued.cert, issued.key)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(10)

        def serve() -> None:
            connection, _ = listener.accept()
            with contextlib.suppress(OSError), server.wrap_socket(connection, server_side=True):
                pass

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        with socket.create_connection(listener.getsockname(), timeout=10) as raw, \
                tls11_client(ca).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            version = tls.version() or ""
        thread.join(10)
    return version


# TLS


async def test_tls_scrape_with_a_real_client(pki: CA) -> None:
    server = pki.issue("server", serial=77)
    async with serving(agent_for(web_file(pki, tls={}))) as address:
        status, _, body = await get(address, context=client(pki))
        assert status == 200 and b"static_value 1\n" in body
        assert await tls_session(address, client(pki)) == (server.serial, "TLSv1.3")
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await get(address, context=ssl.create_default_context())  # not our CA
        with pytest.raises(aiohttp.ClientError):
            await get(address)  # plain HTTP to the TLS port
        assert (await get(address, "/-/healthy", context=client(pki)))[0] == 200


async def test_tls12_is_the_floor_and_min_version_is_enforced(pki: CA) -> None:
    path = web_file(pki, tls={})
    # The control proves this OpenSSL can still speak TLS 1.1, so the refusal below is the
    # agent's floor and not the library's.
    assert await asyncio.to_thread(accepts_tls11, pki.issue("control"), pki) == "TLSv1.1"
    agent = agent_for(path)
    agent.source = ConfigSource(None, {"web": {"listen_address": "127.0.0.1:0",
                                               "config_file": str(path)}})
    async with serving(agent) as address:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await tls_session(address, tls11_client(pki))
        assert (await tls_session(address, client(pki, maximum=ssl.TLSVersion.TLSv1_2)))[1] \
            == "TLSv1.2"
        web_file(pki, tls={"min_version": "TLS13"})
        await agent.reload()
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await tls_session(address, client(pki, maximum=ssl.TLSVersion.TLSv1_2))
        assert (await tls_session(address, client(pki)))[1] == "TLSv1.3"
        status, _, _ = await get(address, context=client(pki))
        assert status == 200


async def test_mutual_tls(pki: CA, tmp_path: Path) -> None:
    good = pki.issue("scraper", client=True)
    (tmp_path / "rogue").mkdir()
    rogue = CA(tmp_path / "rogue", "rogue").issue("scraper", client=True)
    path = web_file(pki, tls={"client_auth_type": "RequireAndVerifyClientCert",
                              "client_ca_file": "ca.crt"})
    agent = agent_for(path)
    agent.source = ConfigSource(None, {"web": {"listen_address": "127.0.0.1:0",
                                               "config_file": str(path)}})
    async with serving(agent) as address:
        for refused in (client(pki), client(pki, rogue)):
            with pytest.raises(REFUSED):
                await get(address, context=refused)
        assert (await get(address, context=client(pki, good)))[0] == 200

        web_file(pki, tls={"client_auth_type": "VerifyClientCertIfGiven",
                           "client_ca_file": "ca.crt"})
        await agent.reload()
        assert (await get(address, context=client(pki)))[0] == 200
        assert (await get(address, context=client(pki, good)))[0] == 200
        with pytest.raises(REFUSED):
            await get(address, context=client(pki, rogue))


# Basic auth


async def test_basic_auth_right_wrong_missing_and_unknown(pki: CA,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    checked: list[bytes] = []
    checkpw = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        checked.append(hashed)
        return checkpw(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting)
    path = web_file(pki, tls={}, users={USER: bcrypt_hash(PASSWORD, 5),
                                        "alice": bcrypt_hash("other", 4)},
                    headers={"X-Frame-Options": "deny", "X-Content-Type-Options": "nosniff"})
    async with serving(agent_for(path)) as address:
        tls = client(pki)
        status, headers, body = await get(address, context=tls, auth=(USER, PASSWORD))
        assert status == 200 and b"static_value" in body
        assert headers["X-Frame-Options"] == "deny"
        assert headers["X-Content-Type-Options"] == "nosniff"
        failures = []
        for auth, extra in ((None, None), ((USER, "wrong"), None), (("nobody", PASSWORD), None),
                            (None, {"Authorization": "Basic !!!"}),
                            (None, {"Authorization": "Bearer abc"}),
                            ((USER, PASSWORD * 10), None)):
            status, headers, body = await get(address, context=tls, auth=auth, headers=extra)
            assert status == 401, (auth, extra)
            assert headers["WWW-Authenticate"] == CHALLENGE
            assert headers["X-Frame-Options"] == "deny", "configured headers on every response"
            failures.append(body)
        assert len(set(failures)) == 1 and failures[0] == b"Unauthorized\n"
        # A known and an unknown user each cost one bcrypt run at the table's highest cost.
        checked.clear()
        await get(address, context=tls, auth=(USER, "wrong"))
        await get(address, context=tls, auth=("nobody", "wrong"))
        assert len(checked) == 2 and all(h.startswith(b"$2b$05$") for h in checked)
        # Good credentials are remembered: a scrape does not cost a bcrypt run each time.
        checked.clear()
        assert (await get(address, context=tls, auth=(USER, PASSWORD)))[0] == 200
        assert checked == []
        # Every endpoint, known or not, asks for credentials first.
        for method, route in (("GET", "/"), ("GET", "/health"), ("GET", "/-/healthy"),
                              ("GET", "/-/ready"), ("POST", "/-/reload"), ("GET", "/nope"),
                              ("HEAD", "/metrics"), ("DELETE", "/metrics")):
            assert (await get(address, route, tls, method=method))[0] == 401, route
        assert (await get(address, "/nope", tls, auth=(USER, PASSWORD)))[0] == 404
        assert (await get(address, "/-/reload", tls, auth=("alice", "other"),
                          method="POST"))[0] == 403


async def test_probes_exempt_only_when_configured(pki: CA) -> None:
    path = web_file(pki, users={USER: bcrypt_hash(PASSWORD)})
    async with serving(agent_for(path, auth_exempt_probes=True)) as address:
        await eventually(lambda: _status_is(address, "/-/ready", 200), "readiness")
        assert (await get(address, "/-/healthy"))[0] == 200
        assert (await get(address, "/-/healthy", method="HEAD"))[0] == 200
        for route in ("/metrics", "/health", "/", "/-/healthy/", "/-/healthyx", "/nope"):
            assert (await get(address, route))[0] == 401, route
        assert (await get(address, "/-/ready", method="POST"))[0] == 401


async def _status_is(address: str, path: str, status: int) -> bool:
    return (await get(address, path))[0] == status


# Reload and rotation


async def test_certificate_rotation_and_user_changes_without_restart(
        pki: CA, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    first = pki.issue("server", serial=1001)
    path = web_file(pki, tls={}, users={USER: bcrypt_hash(PASSWORD)})
    async with serving(agent_for(path)) as address:
        tls = client(pki)
        assert (await tls_session(address, tls))[0] == first.serial
        # An established keep-alive connection outlives the rotation.
        connector = aiohttp.TCPConnector(ssl=tls, limit=1)
        async with aiohttp.ClientSession(connector=connector,
                                         headers={"Authorization": basic(USER, PASSWORD)}
                                         ) as session:
            async with session.get(f"https://{address}/metrics") as response:
                assert response.status == 200
            second = pki.issue("server", serial=2002)

            async def rotated() -> bool:
                return (await tls_session(address, tls))[0] == second.serial

            await eventually(rotated, "the new certificate to be served")
            async with session.get(f"https://{address}/metrics") as response:
                assert response.status == 200

        web_file(pki, tls={}, users={USER: bcrypt_hash(PASSWORD), "bob": bcrypt_hash("b0b")})

        async def bob_allowed() -> bool:
            return (await get(address, context=tls, auth=("bob", "b0b")))[0] == 200

        await eventually(bob_allowed, "the new user")

        # A broken file is logged and the running configuration stays.
        write_atomic(path, b"tls_server_config: {cert_file: server.crt}\nrate_limit: {burst: 1}\n")
        await eventually(lambda: _logged(caplog, "web config change rejected"), "the rejection")
        assert (await get(address, context=tls, auth=("bob", "b0b")))[0] == 200
        assert (await tls_session(address, tls))[0] == second.serial
        problems = [r.kv["problem"] for r in caplog.records  # type: ignore[attr-defined]
                    if r.getMessage() == "web config change rejected, keeping the running one"]
        assert any("tls_server_config.key_file: required field is missing" in p
                   for p in problems), problems
        assert any("rate_limit: not supported" in p for p in problems)
        # A key that does not match the certificate is refused too, until it does.
        third = pki.issue("server", serial=3003)
        other = CA(pki.directory, "other").issue("stray")
        web_file(pki, tls={"key_file": other.key.name}, users={USER: bcrypt_hash(PASSWORD)})
        await eventually(lambda: _logged(caplog, "key values mismatch"), "the mismatch")
        assert (await tls_session(address, tls))[0] == second.serial
        web_file(pki, tls={}, users={USER: bcrypt_hash(PASSWORD)})
        await eventually(lambda: _serial_is(address, tls, third.serial), "the fixed file")


async def _logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return text in logged(caplog)


async def _serial_is(address: str, context: ssl.SSLContext, serial: int) -> bool:
    return (await tls_session(address, context))[0] == serial


async def test_reload_rereads_the_web_config(pki: CA, tmp_path: Path) -> None:
    path = web_file(pki, tls={}, users={USER: bcrypt_hash(PASSWORD)})
    config = tmp_path / "hostagent.yml"
    config.write_text(yaml.safe_dump({"web": {"listen_address": "127.0.0.1:0",
                                              "config_file": str(path)}}))
    agent = agent_for(path)
    agent.source = ConfigSource(config)
    async with serving(agent, poll=3600) as address:  # only the reload reads the file here
        tls = client(pki)
        web_file(pki, tls={}, users={"carol": bcrypt_hash("c4rol")})
        assert (await get(address, context=tls, auth=("carol", "c4rol")))[0] == 401
        await agent.reload()
        assert (await get(address, context=tls, auth=("carol", "c4rol")))[0] == 200
        assert (await get(address, context=tls, auth=(USER, PASSWORD)))[0] == 401

        write_atomic(path, b"basic_auth_users: {carol: plaintext}\n")
        with pytest.raises(ConfigError) as caught:
            await agent.reload()
        assert caught.value.problems == [
            f"{path}: basic_auth_users: user 'carol': the password must be a bcrypt hash "
            "($2a$, $2b$ or $2y$, cost 04-31)"]
        assert (await get(address, context=tls, auth=("carol", "c4rol")))[0] == 200

        web_file(pki, users={"carol": bcrypt_hash("c4rol")})  # TLS off: needs a restart
        with pytest.raises(ConfigError, match="switching TLS on or off needs a restart"):
            await agent.reload()
        assert (await get(address, context=tls, auth=("carol", "c4rol")))[0] == 200


def test_rotation_in_the_real_process(pki: CA) -> None:
    """The same under uvloop, as the agent runs in production."""
    first = pki.issue("server", serial=41)
    path = web_file(pki, tls={})
    agent = AgentProcess("--web.listen-address", "127.0.0.1:0", "--web.config.file", str(path))
    try:
        host, port = agent.address.rsplit(":", 1)

        def served() -> int:
            with socket.create_connection((host, int(port)), timeout=10) as raw, \
                    client(pki).wrap_socket(raw, server_hostname=host) as tls:
                return serial_of(tls.getpeercert(binary_form=True) or b"")

        assert served() == first.serial
        second = pki.issue("server", serial=42)
        deadline = time.monotonic() + 60
        while served() != second.serial:
            assert time.monotonic() < deadline, "the new certificate was never served"
            time.sleep(0.2)
        agent.wait_for(r'msg="(web config loaded)"')
    finally:
        agent.proc.terminate()
        agent.proc.wait(timeout=30)


# A real Prometheus


def test_real_prometheus_scrapes_over_https_with_basic_auth(pki: CA, tmp_path: Path) -> None:
    path = web_file(pki, tls={}, users={USER: bcrypt_hash(PASSWORD)})
    agent = AgentProcess("--web.listen-address", "127.0.0.1:0", "--web.config.file", str(path),
                         "--collector.disable-defaults", "--collector.cpu")
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {"job_name": job, "scheme": "https",
             "tls_config": {"ca_file": str(pki.path), "server_name": "localhost"},
             "basic_auth": {"username": USER, "password": password},
             "static_configs": [{"targets": [agent.address]}]}
            for job, password in (("hostagent", PASSWORD), ("wrong-password", "nope"))],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    prometheus = Prometheus(tmp_path / "prometheus.yml", tmp_path / "data", free_port())
    try:
        def up(job: str) -> list[str]:
            result = prometheus.query(f'up{{job="{job}"}}')["data"]["result"]
            return [sample["value"][1] for sample in result]

        prometheus.wait(lambda: up("hostagent") == ["1"], "up == 1 over HTTPS with basic auth")
        prometheus.wait(lambda: up("wrong-password") == ["0"], "a wrong password to fail")
        targets = prometheus.api("targets")["data"]["activeTargets"]
        wrong = next(t for t in targets if t["labels"]["job"] == "wrong-password")
        assert "401" in wrong["lastError"]
        result = prometheus.query('node_cpu_seconds_total{job="hostagent"}')["data"]["result"]
        assert result, "series scraped over HTTPS"
    finally:
        prometheus.proc.terminate()
        prometheus.proc.wait(timeout=30)
        agent.proc.terminate()
        agent.proc.wait(timeout=30)


# Hostile clients


async def test_slow_header_client_is_cut_off_while_scrapes_work(pki: CA) -> None:
    async with serving(agent_for(None, read_timeout=2)) as address:
        host, port = address.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: agent\r\nX-Slow: ")
        received, closed = b"", False
        try:
            for sent in range(60):  # one header byte a second, for at most a minute
                if sent % 2 == 0:
                    status, _, body = await get(address)
                    assert status == 200 and b"static_value" in body
                try:
                    writer.write(b"x")
                    await writer.drain()
                    chunk = await asyncio.wait_for(reader.read(1024), 1.0)
                except TimeoutError:
                    continue
                except ConnectionError:
                    closed = True
                    break
                received += chunk
                if not chunk:
                    closed = True
                    break
        finally:
            writer.close()
        assert closed, "the slow client was never cut off"
        assert received == b"", "and it got no response"
        assert (await get(address))[0] == 200


REQUEST = b"GET /-/healthy HTTP/1.1\r\nHost: agent\r\n\r\n"


async def response(reader: asyncio.StreamReader) -> bytes:
    """One whole response (headers and a Content-Length body) read off a kept connection."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    return head + await asyncio.wait_for(reader.readexactly(length), 10)


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """Whether the server closes the connection within seconds (sending nothing more)."""
    try:
        return await asyncio.wait_for(reader.read(1), seconds) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


@contextlib.asynccontextmanager
async def connected(address: str) -> AsyncIterator[tuple[asyncio.StreamReader,
                                                         asyncio.StreamWriter]]:
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        yield reader, writer
    finally:
        writer.close()


async def test_idle_keep_alive_connection_outlives_the_read_timeout() -> None:
    """Prometheus keeps an idle connection for the next scrape: reconnecting for each one
    costs the agent about as much CPU as answering it."""
    async with serving(agent_for(None, read_timeout=1)) as address, \
            connected(address) as (reader, writer):
        writer.write(REQUEST)
        assert (await response(reader)).startswith(b"HTTP/1.1 200")
        assert not await closed_within(reader, 2.5)  # idle well past read_timeout
        writer.write(REQUEST)  # the same socket answers again
        assert (await response(reader)).startswith(b"HTTP/1.1 200")


async def test_slow_request_on_a_kept_connection_is_cut_off() -> None:
    """After a response the connection may idle for web.idle_timeout, but once a request's
    first byte arrives its line and headers must be complete within web.read_timeout."""
    async with serving(agent_for(None, read_timeout=1)) as address, \
            connected(address) as (reader, writer):
        writer.write(REQUEST)
        assert (await response(reader)).startswith(b"HTTP/1.1 200")
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: agent\r\nX-Slow: ")
        closed = False
        for _ in range(60):  # a header byte every 0.25 s, for at most 15 s
            with contextlib.suppress(ConnectionError):
                writer.write(b"x")
            if closed := await closed_within(reader, 0.25):
                break
        assert closed, "the slow request was never cut off"


async def test_silent_connection_is_closed_after_the_read_timeout() -> None:
    async with serving(agent_for(None, read_timeout=1)) as address, \
            connected(address) as (reader, _):
        assert await closed_within(reader, 10)


async def test_idle_connection_is_closed_after_the_idle_timeout() -> None:
    async with serving(agent_for(None, read_timeout=10, idle_timeout=1)) as address, \
            connected(address) as (reader, writer):
        writer.write(REQUEST)
        assert (await response(reader)).startswith(b"HTTP/1.1 200")
        assert await closed_within(reader, 5)


async def test_oversized_headers_and_bodies_are_refused() -> None:
    async with serving(agent_for(None, max_header_size=1024, max_body_size=100,
                                 enable_lifecycle=True)) as address:
        host, port = address.rsplit(":", 1)

        async def raw(request: bytes) -> bytes:
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(request)
            try:
                return await asyncio.wait_for(reader.read(), 30)
            finally:
                writer.close()

        host_line = b"Host: agent\r\n"
        for request in (b"GET /metrics HTTP/1.1\r\n" + host_line + b"X-Big: " + b"a" * 4096
                        + b"\r\n\r\n",
                        b"GET /metrics?" + b"q" * 4096 + b" HTTP/1.1\r\n" + host_line + b"\r\n",
                        b"GET /metrics HTTP/1.1\r\n" + host_line + b"X-Many: 1\r\n" * 500
                        + b"\r\n"):
            response = await raw(request)
            assert response.split(b" ", 2)[1] in (b"400", b"413", b"414", b"431"), response
            assert b"Missing 'Host'" not in response
        assert (await get(address, headers={"X-Fits": "a" * 900}))[0] == 200

        response = await raw(b"POST /-/reload HTTP/1.1\r\nHost: agent\r\nContent-Length: 101\r\n"
                             b"Connection: close\r\n\r\n" + b"x" * 101)
        assert response.startswith(b"HTTP/1.1 413"), response
        response = await raw(b"POST /-/reload HTTP/1.1\r\nHost: agent\r\n"
                             b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                             b"5\r\nhello\r\n0\r\n\r\n")
        assert response.startswith(b"HTTP/1.1 411")
        response = await raw(b"POST /-/reload HTTP/1.1\r\nHost: agent\r\nContent-Length: 5\r\n"
                             b"Connection: close\r\n\r\nhello")
        assert response.startswith(b"HTTP/1.1 200"), response
        assert (await get(address, "/-/healthy"))[0] == 200


async def test_secrets_never_in_logs_health_or_the_status_page(
        pki: CA, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    hashed = bcrypt_hash(PASSWORD)
    path = web_file(pki, tls={}, users={USER: hashed})
    key_lines = (pki.directory / "server.key").read_text().splitlines()[1:-1]
    async with serving(agent_for(path, max_header_size=1024)) as address:
        tls = client(pki)
        assert (await get(address, context=tls, auth=(USER, PASSWORD)))[0] == 200
        assert (await get(address, context=tls, auth=(USER, PASSWORD + "x")))[0] == 401
        # An oversized Authorization header: aiohttp's parser error quotes the client's bytes.
        secret_header = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        status, _, _ = await get(address, context=tls,
                                 headers={"Authorization": secret_header + " " * 2000})
        assert status in (400, 431)
        assert (await get(address, "/x" + PASSWORD * 60, context=tls))[0] in (400, 414, 431)
        # A plaintext password by mistake: refused, and never echoed.
        write_atomic(path, f"basic_auth_users: {{{USER}: '{PASSWORD}'}}\n".encode())
        await eventually(lambda: _logged(caplog, "web config change rejected"), "the rejection")
        pages = [(await get(address, route, context=tls, auth=(USER, PASSWORD)))[2].decode()
                 for route in ("/health", "/")]
    encoded = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    for text in (logged(caplog), caplog.text, *pages):
        for secret in (PASSWORD, encoded, hashed, *key_lines):
            assert secret not in text
    assert "msg=\"bad request\" status=400" in logged(caplog), \
        "malformed requests are still logged (at debug level), without their bytes"


# Fuzz


ENDPOINTS = ["/", "/metrics", "/-/healthy", "/-/ready", "/health", "/-/reload",
             "/debug/profile", "/debug/tasks", "/debug/threads", "/debug/heap",
             "/debug/heap/start", "/debug/heap/stop"]
TOKEN = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"
PATH_CHARS = string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@/%"
FRAMING = {"content-length", "transfer-encoding", "connection", "upgrade", "expect", "host",
           "te", "trailer", "keep-alive", "http2-settings", "proxy-connection"}


def mostly(usual: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually the usual, so that most requests get past the parser to the handlers."""
    return st.one_of(usual, usual, usual, odd)


header_values = mostly(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E),
                               max_size=60),
                       st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF,
                                             exclude_characters="\x7f"), max_size=80))
header_names = mostly(st.sampled_from(["Accept", "Accept-Encoding", "Authorization", "Cookie",
                                       "Range", "If-Modified-Since", "X-Forwarded-For",
                                       "Content-Type", "Origin", "User-Agent"]),
                      st.text(TOKEN, min_size=1, max_size=24).filter(
                          lambda name: name.lower() not in FRAMING))
random_paths = (st.text(PATH_CHARS, max_size=40).map(lambda p: "/" + p)
                | st.text(max_size=12).map(lambda t: "/" + urllib.parse.quote(t)))
queries = mostly(st.lists(st.tuples(st.sampled_from(["hz", "top", "format", "x"])
                                    | st.text(max_size=8), st.text(max_size=12)),
                          max_size=4).map(urllib.parse.urlencode),
                 st.text(PATH_CHARS + "?", max_size=40))
odd_methods = (st.sampled_from(["PUT", "DELETE", "OPTIONS", "PATCH", "TRACE"])
               | st.text(TOKEN, min_size=1, max_size=10))


@st.composite
def requests(draw: st.DrawFn, path: str | None) -> tuple[bytes, bool]:
    """(bytes to send, whether they form an HTTP request that must get a response), for one
    endpoint or (path None) for random paths."""
    kind = draw(st.integers(0, 15))
    if kind == 0:
        return draw(st.binary(min_size=1, max_size=200)) + b"\r\n\r\n", False
    method = draw(odd_methods if kind == 1 else st.sampled_from(["GET", "HEAD", "POST"]))
    query = draw(queries)
    path = path or draw(random_paths)
    if path == "/debug/profile":
        query = "seconds=1&" + query  # a profile samples for as long as it is asked
    lines = [f"{method} {path}{'?' + query if query else ''} HTTP/1.1", "Host: 127.0.0.1",
             "Connection: close"]
    credentials = draw(st.sampled_from(["good", "good", "good", "wrong", "none"]))
    if credentials != "none":
        lines.append("Authorization: " + basic(USER, PASSWORD if credentials == "good" else "x"))
    lines += [f"{name}: {value}" for name, value in
              draw(st.lists(st.tuples(header_names, header_values), max_size=5,
                            unique_by=lambda header: header[0].lower()))]
    body = draw(st.binary(max_size=128)) if method in ("POST", "PUT", "PATCH") else b""
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body, True


def exchange(address: str, data: bytes) -> bytes:
    host, port = address.rsplit(":", 1)
    received = b""
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        try:
            sock.sendall(data)
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
    return received


@pytest.fixture
def fuzz_agent(tmp_path: Path) -> Iterator[AgentProcess]:
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users: {{{USER}: '{bcrypt_hash(PASSWORD)}'}}\n"
                   "http_server_config: {headers: {X-Content-Type-Options: nosniff}}\n")
    config = tmp_path / "hostagent.yml"
    config.write_text(yaml.safe_dump({
        "web": {"config_file": str(web), "enable_lifecycle": True, "max_header_size": 2048},
        "debug": {"enabled": True}}))
    agent = AgentProcess("--config", str(config), "--web.listen-address", "127.0.0.1:0")
    yield agent
    if agent.proc.poll() is None:
        agent.proc.terminate()
        agent.proc.wait(timeout=30)


def test_fuzz_every_endpoint(fuzz_agent: AgentProcess) -> None:
    address = fuzz_agent.address

    def ok(path: str) -> bool:
        request = (f"GET {path} HTTP/1.1\r\nHost: agent\r\nAuthorization: "
                   f"{basic(USER, PASSWORD)}\r\nConnection: close\r\n\r\n")
        return exchange(address, request.encode()).startswith(b"HTTP/1.1 200")

    for _ in range(300):
        if ok("/-/ready"):
            break
        time.sleep(0.05)
    seen: dict[str, set[int]] = {}

    def fuzz(target: str | None) -> None:
        @settings(max_examples=16, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow])
        @given(requests(target))
        def one(case: tuple[bytes, bool]) -> None:
            data, well_formed = case
            response = exchange(address, data)
            assert fuzz_agent.proc.poll() is None, f"the agent crashed on {data!r}"
            if not response:
                assert not well_formed, f"no response to {data!r}"
                return
            status = int(response.split(b" ", 2)[1])
            seen.setdefault(target or "random", set()).add(status)
            assert status < 500, (data, response[:300])

        one()

    for target in [*ENDPOINTS, None]:  # every endpoint, then random paths: 13 x 16 requests
        fuzz(target)
    answered = {target for target, statuses in seen.items() if statuses - {400, 401}}
    assert answered >= set(ENDPOINTS), seen
    assert ok("/-/healthy") and ok("/metrics"), "the agent keeps serving"
    assert fuzz_agent.proc.poll() is None
    while not fuzz_agent.lines.empty():
        fuzz_agent.log.append(fuzz_agent.lines.get())
    errors = [line for line in fuzz_agent.log if "level=error" in line or "Traceback" in line]
    assert not errors, errors
    assert PASSWORD not in "".join(fuzz_agent.log)
