"""Faults from in-process servers (asyncssh, and a bare TCP listener): each gives its reason
within its timeout, and the healthy target probed in the same rounds is left untouched."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncssh

from agent.exposition.registry import Registry
from agent.ssh.worker import SshWorker
from tests.sshd import SshLab
from tests.test_ssh_worker import failure, results, value, worker

TIMEOUT = 1.0  # the configured login and command timeouts (not an assertion)
Handler = Callable[[asyncssh.SSHServerProcess[Any]], Awaitable[None]]


class Server:
    """An asyncssh server on a loopback port, trusted in the lab's known_hosts."""

    def __init__(self, lab: SshLab, handler: Handler, accept_lab_key: bool = True) -> None:
        self.lab, self.handler = lab, handler
        other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
        self.authorized = lab.key.public if accept_lab_key else other.strip()
        self.key = asyncssh.generate_private_key("ssh-ed25519")
        self.active = 0
        self.most_active = 0
        self.sessions = 0

    async def _process(self, process: asyncssh.SSHServerProcess[Any]) -> None:
        self.sessions += 1
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            await self.handler(process)
        finally:
            self.active -= 1

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        acceptor = await asyncssh.create_server(
            asyncssh.SSHServer, "127.0.0.1", 0, server_host_keys=[self.key],
            authorized_client_keys=asyncssh.import_authorized_keys(self.authorized),
            process_factory=self._process, encoding=None)
        port = acceptor.sockets[0].getsockname()[1]
        public = self.key.export_public_key().decode().split()[:2]
        self.lab.trust([f"[127.0.0.1]:{port} {' '.join(public)}"])
        try:
            yield f"127.0.0.1:{port}"
        finally:
            acceptor.close()
            await acceptor.wait_closed()


@contextlib.asynccontextmanager
async def silent_listener() -> AsyncIterator[str]:
    """Accepts TCP connections and never says anything: the SSH handshake never ends."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def hang(process: asyncssh.SSHServerProcess[Any]) -> None:
    await asyncio.sleep(3600)


async def drop(process: asyncssh.SSHServerProcess[Any]) -> None:
    process.stdout.write(b"partial output\n")
    await asyncio.sleep(0.05)
    process.channel.get_connection().abort()


async def echo(process: asyncssh.SSHServerProcess[Any]) -> None:
    process.stdout.write(b"0.00 0.01 0.05 1/1 1\n")
    process.exit(0)


async def test_each_fault_has_its_reason_and_spares_the_others(ssh_lab: SshLab) -> None:
    healthy = ssh_lab.server()
    good = f"127.0.0.1:{healthy.ports[0]}"
    servers = {"timeout-command": Server(ssh_lab, hang),
               "dropped": Server(ssh_lab, drop),
               "auth": Server(ssh_lab, echo, accept_lab_key=False)}
    async with contextlib.AsyncExitStack() as stack:
        names = {kind: await stack.enter_async_context(server.running())
                 for kind, server in servers.items()}
        names["timeout-handshake"] = await stack.enter_async_context(silent_listener())
        config = ssh_lab.config(
            [good, *names.values()], login_timeout=TIMEOUT, command_timeout=TIMEOUT,
            checks=[{"name": "loadavg", "command": "cat /proc/loadavg"}])
        async with worker(config, Registry()) as ssh:
            await asyncio.wait_for(ssh.run_once(), 60)
            expected = {"timeout-command": "timeout", "dropped": "command", "auth": "auth",
                        "timeout-handshake": "timeout"}
            for kind, reason in expected.items():
                values = results(ssh, names[kind])
                assert failure(values) == reason, kind
                assert value(values, "hostagent_ssh_check_success", check="loadavg") == 0
                assert value(values, "hostagent_ssh_check_exit_status", check="loadavg") == -1
                # Bounded by the timeouts (generously: a loaded machine is slow).
                assert value(values, "hostagent_ssh_probe_duration_seconds") < 30 * TIMEOUT
            for kind in ("timeout-handshake", "timeout-command"):
                assert value(results(ssh, names[kind]),
                             "hostagent_ssh_probe_duration_seconds") >= TIMEOUT
            assert value(results(ssh, names["auth"]), "hostagent_ssh_up") == 0
            assert value(results(ssh, names["timeout-command"]), "hostagent_ssh_up") == 1
            values = results(ssh, good)
            assert failure(values) is None and value(values, "hostagent_ssh_up") == 1
            assert value(values, "hostagent_ssh_check_success", check="loadavg") == 1
            assert ssh.up_count() == (3, 5)


async def test_rounds_of_one_target_never_overlap(ssh_lab: SshLab) -> None:
    async def slow(process: asyncssh.SSHServerProcess[Any]) -> None:
        await asyncio.sleep(0.3)  # longer than the interval
        process.exit(0)

    server = Server(ssh_lab, slow)
    async with server.running() as name:
        config = ssh_lab.config([name], modules={"login": {"enabled": False},
                                                 "checks": {"interval": 0.05}},
                                checks=[{"name": "slow", "command": "sleep"}])
        ssh = SshWorker(config, Registry())
        await ssh.start()  # scheduled rounds, as the agent runs them
        try:
            for _ in range(200):
                if server.sessions >= 4:
                    break
                await asyncio.sleep(0.05)
        finally:
            await ssh.stop()
        assert server.sessions >= 4
        assert server.most_active == 1
