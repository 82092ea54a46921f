"""Real OpenSSH servers on loopback for the SSH tests and the benchmark.

One sshd listens on up to 16 ports (ListenAddress lines). Keys are generated with ssh-keygen:
one host key per server, one user key shared by the servers of a KeyPair.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SSHD = "/usr/sbin/sshd"
MAX_PORTS = 16


def free_ports(count: int) -> list[int]:
    """Distinct loopback ports that were free a moment ago (held together while chosen)."""
    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]


def keygen(path: Path) -> str:
    """A new ed25519 key at path (no passphrase); returns its public line."""
    subprocess.run([shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen", "-q", "-t", "ed25519",
                    "-N", "", "-C", path.name, "-f", str(path)], check=True, timeout=30)
    return path.with_suffix(".pub").read_text().strip()


@dataclass
class UserKey:
    path: Path
    public: str


def user_key(directory: Path, name: str = "id_ed25519") -> UserKey:
    path = directory / name
    return UserKey(path, keygen(path))


def descendants(pid: int) -> list[int]:
    """Every process below pid (sshd forks one per connection, each in its own session)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo and len(found) < 100_000:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class Sshd:
    """sshd -D on 127.0.0.1:ports, accepting `user` with the given authorized keys."""

    def __init__(self, directory: Path, authorized: list[str], ports: list[int] | None = None,
                 user: str | None = None, max_startups: str = "100:30:1000") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory.resolve()
        self.ports = ports or free_ports(1)
        assert len(self.ports) <= MAX_PORTS
        self.user = user or getpass.getuser()
        self.host_key = self.directory / "host_ed25519"
        if not self.host_key.exists():
            keygen(self.host_key)
        self.host_public = self.host_key.with_suffix(".pub").read_text().split()[:2]
        (self.directory / "authorized_keys").write_text("\n".join(authorized) + "\n")
        listen = "\n".join(f"ListenAddress 127.0.0.1:{port}" for port in self.ports)
        self.config = self.directory / "sshd_config"
        self.config.write_text(f"""{listen}
HostKey {self.host_key}
AuthorizedKeysFile {self.directory}/authorized_keys
PidFile {self.directory}/sshd.pid
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
AllowUsers {self.user}
MaxStartups {max_startups}
MaxSessions 16
PrintMotd no
LogLevel ERROR
""")
        self.proc: subprocess.Popen[bytes] | None = None

    def known_hosts_lines(self) -> list[str]:
        return [f"[127.0.0.1]:{port} {' '.join(self.host_public)}" for port in self.ports]

    def start(self, timeout: float = 20) -> None:
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation
        log = self.directory / "sshd.log"
        with log.open("ab") as stderr:
            self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)],
                                         stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.monotonic() + timeout
        for port in self.ports:
            while not _banner(port):
                if self.proc.poll() is not None:
                    raise RuntimeError(f"sshd exited: {log.read_text()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sshd did not listen on port {port}")
                time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL the server and every connection it serves: clients see their connections
        drop, as when a host goes away. The sessions' own processes get SIGTERM instead, so a
        login shell's start-up files (a pyenv rehash holding its lock, say) clean up after
        themselves rather than leave a stale lock that stalls every later login."""
        if self.proc is None or self.proc.poll() is not None:
            return
        for pid in [self.proc.pid, *descendants(self.proc.pid)]:
            with contextlib.suppress(OSError):
                name = Path(f"/proc/{pid}/comm").read_text().strip()
                os.kill(pid, signal.SIGKILL if name.startswith("sshd") else signal.SIGTERM)
        self.proc.wait(timeout=10)


def _banner(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


class SshLab:
    """The servers of one test, a known_hosts file trusting them, and worker configs."""

    def __init__(self, directory: Path, key: UserKey) -> None:
        self.directory = directory
        self.key = key
        self.known_hosts = directory / "known_hosts"
        self.known_hosts.write_text("")
        self.servers: list[Sshd] = []

    def server(self, ports: int = 1, trusted: bool = True) -> Sshd:
        sshd = Sshd(self.directory / f"sshd{len(self.servers)}", [self.key.public],
                    free_ports(ports))
        self.servers.append(sshd)
        sshd.start()
        if trusted:
            self.trust(sshd.known_hosts_lines())
        return sshd

    def trust(self, lines: list[str]) -> None:
        with self.known_hosts.open("a") as out:
            out.write("".join(line + "\n" for line in lines))

    def config(self, targets: list[Any], **settings: Any) -> Any:
        from agent.config import SshConfig

        return SshConfig.model_validate({
            "enabled": True, "targets": targets, "key_files": [str(self.key.path)],
            "known_hosts": str(self.known_hosts), "connect_timeout": 10, "login_timeout": 20,
            "command_timeout": 20, **settings})

    def close(self) -> None:
        for sshd in self.servers:
            sshd.kill()
