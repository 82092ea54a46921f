"""Connections: set up behind a handshake cap, kept per target across rounds, and every failure
classified as one reason.

Trust: host keys are checked against the configured known_hosts file unless the operator opted
out; the user's ~/.ssh/config is never read; keys come from the configured files (the default
identities ~/.ssh/id_* when none are configured) and from an ssh-agent only when asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh

from agent.ssh.targets import Target

REASONS = ("connect", "timeout", "auth", "host_key", "command", "output")
OUTPUT_LIMIT = 4 * 1024 * 1024  # bytes of a command's output kept; the rest is read and dropped
KEEPALIVE_COUNT_MAX = 3
# AES-GCM first: one library call per packet, where asyncssh's chacha20-poly1305 makes
# several (it costs most of the client's CPU on a kept connection); the rest as asyncssh's.
CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com",
           "aes128-ctr", "aes192-ctr", "aes256-ctr")


class ProbeError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class SessionUnavailable(ProbeError):
    """No session could be opened: the connection is gone (a reused one may be dead)."""

    def __init__(self, message: str) -> None:
        super().__init__("command", message)


@dataclass(frozen=True)
class ConnectSettings:
    known_hosts: Path | None  # None: host keys are not verified (an explicit opt-out)
    agent: bool = False
    keepalive_interval: float = 30.0
    connect_timeout: float = 5.0
    login_timeout: float = 10.0


@dataclass(frozen=True)
class Completed:
    exit_status: int | None  # None when the command was killed by a signal
    stdout: bytes
    stderr: bytes


class _Cached:
    """A file parsed again only when it changes (mtime, size, inode)."""

    def __init__(self) -> None:
        self._entries: dict[Any, tuple[tuple[tuple[int, int, int], ...], Any]] = {}

    def get(self, key: Any, paths: tuple[Path, ...], load: Any) -> Any:
        version = tuple((st.st_mtime_ns, st.st_size, st.st_ino)
                        for st in (p.stat() for p in paths))
        entry = self._entries.get(key)
        if entry is None or entry[0] != version:
            entry = (version, load())
            self._entries[key] = entry
        return entry[1]


class Connector:
    """Opens authenticated connections. known_hosts and key files are read in a thread, and
    again only when they change."""

    def __init__(self, settings: ConnectSettings, handshakes: asyncio.Semaphore) -> None:
        self.settings = settings
        self._handshakes = handshakes
        self._cache = _Cached()

    def _known_hosts(self) -> asyncssh.SSHKnownHosts | None:
        path = self.settings.known_hosts
        if path is None:
            return None
        path = path.expanduser()
        try:
            known: asyncssh.SSHKnownHosts = self._cache.get(
                "known_hosts", (path,), lambda: asyncssh.read_known_hosts(str(path)))
            return known
        except FileNotFoundError:
            # Trusts nothing (an empty value would make asyncssh pick its own default file).
            return asyncssh.import_known_hosts("")
        except (OSError, ValueError) as exc:
            raise ProbeError("host_key", f"cannot read known_hosts {path}: {exc}") from None

    def _keys(self, target: Target) -> Any:
        if not target.key_files:
            return ()  # asyncssh's default identities, ~/.ssh/id_*
        try:
            return self._cache.get(("keys", target.key_files), target.key_files,
                                   lambda: asyncssh.load_keypairs(list(target.key_files)))
        except (OSError, ValueError) as exc:  # asyncssh.KeyImportError is a ValueError
            raise ProbeError("auth", f"cannot load key: {exc}") from None

    async def connect(self, target: Target) -> asyncssh.SSHClientConnection:
        known_hosts, keys = await asyncio.to_thread(
            lambda: (self._known_hosts(), self._keys(target)))
        settings = self.settings
        async with self._handshakes:
            sock = await _open_socket(target, settings.connect_timeout)
            try:
                async with asyncio.timeout(settings.login_timeout):
                    return await asyncssh.connect(
                        target.host, target.port, sock=sock, config=None,
                        username=target.user, client_keys=keys, known_hosts=known_hosts,
                        agent_path=os.environ.get("SSH_AUTH_SOCK") if settings.agent else None,
                        password_auth=False, kbdint_auth=False, gss_auth=False,
                        host_based_auth=False, agent_forwarding=False,
                        keepalive_interval=settings.keepalive_interval,
                        keepalive_count_max=KEEPALIVE_COUNT_MAX, encryption_algs=CIPHERS)
            except BaseException as exc:
                sock.close()  # the transport owns it only once connected
                raise _classify(exc, target, settings) from None


def _classify(exc: BaseException, target: Target, settings: ConnectSettings) -> BaseException:
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return ProbeError("host_key", str(exc))
    if isinstance(exc, asyncssh.PermissionDenied):
        return ProbeError("auth", f"permission denied for {target.user}: {exc}")
    if isinstance(exc, TimeoutError):
        return ProbeError("timeout", f"no login within {settings.login_timeout:g} s")
    if isinstance(exc, asyncssh.Error | OSError):
        return ProbeError("connect", _describe(exc))
    return exc  # cancellation and the unexpected propagate as they are


async def _open_socket(target: Target, timeout: float) -> socket.socket:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
            error: OSError = OSError(f"no address for {target.host}")
            for family, kind, proto, _, address in infos:
                sock = socket.socket(family, kind, proto)
                sock.setblocking(False)
                try:
                    await loop.sock_connect(sock, address)
                    return sock
                except OSError as exc:
                    sock.close()
                    error = exc
                except BaseException:
                    sock.close()
                    raise
            raise error
    except TimeoutError:
        raise ProbeError("timeout", f"no TCP connection within {timeout:g} s") from None
    except OSError as exc:
        raise ProbeError("connect", _describe(exc)) from None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host: {exc.strerror}"
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)
    return str(exc) or type(exc).__name__


async def _read(stream: asyncssh.SSHReader[bytes], limit: int) -> bytes:
    chunks, size = [], 0
    while chunk := await stream.read(65536):
        if size < limit:
            chunks.append(chunk[:limit - size])
        size += len(chunk)
    return b"".join(chunks)


async def run_command(conn: asyncssh.SSHClientConnection, command: str, timeout: float,
                      limit: int = OUTPUT_LIMIT) -> Completed:
    """Runs a command on a new channel. Raises SessionUnavailable when no channel opens,
    ProbeError(timeout) past the timeout, ProbeError(command) when the connection drops."""
    try:
        async with asyncio.timeout(timeout):
            try:
                process = await conn.create_process(command, stdin=asyncssh.DEVNULL,
                                                     encoding=None)
            except (asyncssh.ChannelOpenError, asyncssh.DisconnectError, OSError) as exc:
                raise SessionUnavailable(f"cannot open a session: {_describe(exc)}") from None
            try:
                stdout, stderr = await asyncio.gather(_read(process.stdout, limit),
                                                      _read(process.stderr, limit))
                await process.wait()
            finally:
                process.close()
    except TimeoutError:
        raise ProbeError("timeout", f"command did not finish within {timeout:g} s") from None
    except (asyncssh.Error, OSError) as exc:
        raise ProbeError("command", f"connection lost during the command: {_describe(exc)}"
                         ) from None
    return Completed(process.exit_status, stdout, stderr)


async def close_connection(conn: asyncssh.SSHClientConnection | None) -> None:
    if conn is not None:
        conn.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await conn.wait_closed()


class ConnectionPool:
    """At most one connection per target; with reuse it stays open between rounds."""

    def __init__(self, connector: Connector, reuse: bool) -> None:
        self.connector = connector
        self.reuse = reuse
        self.handshakes: Counter[str] = Counter()
        self._open: dict[str, asyncssh.SSHClientConnection] = {}

    def is_open(self, name: str) -> bool:
        conn = self._open.get(name)
        return conn is not None and not conn.is_closed()

    async def connection(self, target: Target, fresh: bool = False
                         ) -> tuple[asyncssh.SSHClientConnection, bool]:
        """(connection, reused). A dead or unwanted (fresh=True) one is closed first."""
        conn = self._open.get(target.name)
        if conn is not None and not fresh and not conn.is_closed():
            return conn, True
        await self.close(target.name)
        self.handshakes[target.name] += 1
        conn = await self.connector.connect(target)
        self._open[target.name] = conn
        return conn, False

    async def close(self, name: str) -> None:
        await close_connection(self.take(name))

    def take(self, name: str) -> asyncssh.SSHClientConnection | None:
        """Removes the target's connection from the pool, for the caller to close: a new
        target of that name starts on a connection of its own at once."""
        return self._open.pop(name, None)

    async def close_all(self) -> None:
        await asyncio.gather(*(self.close(name) for name in list(self._open)))

    def forget(self, name: str) -> None:
        self.handshakes.pop(name, None)

    @contextlib.asynccontextmanager
    async def session(self, target: Target) -> AsyncIterator[Session]:
        """One round's use of the target; without reuse the connection is closed after it."""
        try:
            yield Session(self, target)
        finally:
            if not self.reuse:
                await self.close(target.name)


class Session:
    """A round on one target: its kept connection or a new one. A kept connection found dead
    when a command starts is replaced once per round; a connection set up in this round is
    never retried."""

    def __init__(self, pool: ConnectionPool, target: Target) -> None:
        self._pool = pool
        self._target = target
        self._conn: asyncssh.SSHClientConnection | None = None
        self.reused = False  # the connection was kept from an earlier round
        self._reconnected = False
        # Set when a kept connection turned out dead and no new one could be made: the
        # target is down, whatever the login at the start of the round said.
        self.lost: ProbeError | None = None

    async def login(self) -> None:
        if self._conn is None:
            self._conn, self.reused = await self._pool.connection(self._target)

    async def run(self, command: str, timeout: float) -> Completed:
        await self.login()
        assert self._conn is not None
        try:
            return await run_command(self._conn, command, timeout)
        except SessionUnavailable:
            if not self.reused or self._reconnected:
                raise
        self._reconnected = True
        try:
            self._conn, self.reused = await self._pool.connection(self._target, fresh=True)
        except ProbeError as exc:
            self.lost = exc
            raise
        return await run_command(self._conn, command, timeout)
