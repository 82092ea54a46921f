"""`hostagent ssh exec`: one command on many hosts at bounded concurrency.

Output lines are prefixed `[host]` as they arrive (or printed per host when it finishes, with
--group); a progress line is drawn on stderr when it is a terminal; a per-host summary (exit
status or failure reason, duration) ends the run. Exit 0 when every host ran the command with
exit status 0, 1 otherwise, 2 for bad usage. Trust as in the worker: host keys are checked
against --known-hosts unless --insecure-ignore-host-keys; ~/.ssh/config is never read.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from agent import runloop
from agent.config import SshConfig
from agent.ssh.targets import Target, make_target, read_target_groups

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-H", "--host", dest="hosts", action="append", default=[],
                        metavar="HOST", help="host, host:port or user@host:port (repeatable)")
    parser.add_argument("--hosts-file", type=Path, metavar="FILE",
                        help="one host per line, or file_sd JSON/YAML (.json, .yml, .yaml)")
    parser.add_argument("-l", dest="user", metavar="USER", help="login name for hosts "
                        "without user@ (default: yours)")
    parser.add_argument("-i", dest="keys", type=Path, action="append", default=[],
                        metavar="KEYFILE", help="private key (repeatable; default: ~/.ssh/id_*)")
    parser.add_argument("--agent", action="store_true", help="also use the ssh-agent")
    parser.add_argument("--known-hosts", type=Path, default=Path("~/.ssh/known_hosts"),
                        metavar="FILE", help="host keys to trust (default ~/.ssh/known_hosts)")
    parser.add_argument("--insecure-ignore-host-keys", action="store_true",
                        help="do not verify host keys (connections can be intercepted)")
    parser.add_argument("-j", dest="jobs", type=int, default=32, metavar="N",
                        help="hosts in flight at once (default 32)")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="S",
                        help="per host: connect, login and command (default 60)")
    parser.add_argument("--group", action="store_true",
                        help="print each host's output together when it finishes")
    parser.add_argument("remote_command", nargs="+", metavar="COMMAND",
                        help="the command and its arguments, after --")


def read_hosts(names: Sequence[str], hosts_file: Path | None, user: str | None,
               keys: Sequence[Path]) -> list[Target]:
    """Targets in order, each once. Raises ValueError or OSError naming the problem."""
    entries: list[tuple[str, dict[str, str]]] = [(name, {}) for name in names]
    if hosts_file is not None:
        if hosts_file.suffix in (".json", ".yml", ".yaml"):
            entries += [(name, labels) for group, labels in read_target_groups(hosts_file)
                        for name in group]
        else:
            entries += [(line.strip(), {}) for line in hosts_file.read_text().splitlines()
                        if line.strip() and not line.lstrip().startswith("#")]
    defaults = SshConfig(user=user, key_files=list(keys))
    targets: dict[str, Target] = {}
    for name, labels in entries:
        targets.setdefault(name, make_target(name, labels, defaults))
    return list(targets.values())


@dataclass
class HostResult:
    target: Target
    exit_status: int | None = None
    reason: str | None = None  # why it failed, from the worker's reasons
    error: str = ""
    duration: float = 0.0
    stdout: list[bytes] = field(default_factory=list)
    stderr: list[bytes] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.reason is None and self.exit_status == 0


class Console:
    """Prefixed output and, on a terminal, one progress line kept at the bottom of stderr."""

    def __init__(self, total: int, out: IO[bytes], err: IO[bytes], tty: bool) -> None:
        self.total, self.done, self.failed = total, 0, 0
        self._out, self._err, self._tty = out, err, tty

    def write(self, stream: str, data: bytes) -> None:
        self._clear()
        target = self._out if stream == "stdout" else self._err
        target.write(data if data.endswith(b"\n") else data + b"\n")
        target.flush()
        self._draw()

    def finished(self, ok: bool) -> None:
        self.done += 1
        self.failed += not ok
        self._clear()
        self._draw()

    def end(self) -> None:
        self._clear()

    def _clear(self) -> None:
        if self._tty:
            self._err.write(b"\r\x1b[K")

    def _draw(self) -> None:
        if self._tty and self.done < self.total:
            self._err.write(f"{self.done}/{self.total} hosts done, {self.failed} failed"
                            .encode())
            self._err.flush()


async def _pump(stream: Any, result: HostResult, kind: str, console: Console,
                group: bool) -> None:
    prefix = f"[{result.target.name}] ".encode()
    async for line in stream:
        if not line:  # end of the stream
            break
        if group:
            getattr(result, kind).append(line)
        else:
            console.write(kind, prefix + line)


async def run_hosts(targets: list[Target], command: str, args: argparse.Namespace,
                    console: Console) -> list[HostResult]:
    import asyncssh

    from agent.ssh import quiet_asyncssh, tune_gc
    from agent.ssh.connections import Connector, ConnectSettings, ProbeError

    quiet_asyncssh()
    tune_gc()
    settings = ConnectSettings(
        known_hosts=None if args.insecure_ignore_host_keys else args.known_hosts,
        agent=args.agent, keepalive_interval=0, connect_timeout=args.timeout,
        login_timeout=args.timeout)
    connector = Connector(settings, asyncio.Semaphore(min(args.jobs, 32)))
    in_flight = asyncio.Semaphore(args.jobs)

    async def one(target: Target) -> HostResult:
        result = HostResult(target)
        async with in_flight:
            started = time.perf_counter()
            try:
                async with asyncio.timeout(args.timeout):
                    async with await connector.connect(target) as conn:
                        process = await conn.create_process(command, stdin=asyncssh.DEVNULL,
                                                             encoding=None)
                        await asyncio.gather(
                            _pump(process.stdout, result, "stdout", console, args.group),
                            _pump(process.stderr, result, "stderr", console, args.group))
                        await process.wait()
                        result.exit_status = process.exit_status
                        if result.exit_status is None:
                            result.reason = "command"
                            result.error = f"killed by signal {process.exit_signal}"
            except ProbeError as exc:
                result.reason, result.error = exc.reason, str(exc)
            except TimeoutError:
                result.reason, result.error = "timeout", f"not done within {args.timeout:g} s"
            except (asyncssh.Error, OSError) as exc:
                result.reason, result.error = "command", str(exc) or type(exc).__name__
            result.duration = time.perf_counter() - started
        if args.group:
            console.write("stdout", f"[{target.name}]".encode())
            for kind in ("stdout", "stderr"):
                for line in getattr(result, kind):
                    console.write(kind, line)
        console.finished(result.ok)
        return result

    return list(await asyncio.gather(*(one(t) for t in targets)))


def summary(results: list[HostResult]) -> str:
    width = max(len(r.target.name) for r in results)
    lines = []
    for r in results:
        status = (f"exit {r.exit_status}" if r.reason is None else r.reason)
        line = f"{r.target.name:<{width}}  {'ok' if r.ok else 'FAILED':<6}  {status:<8}  " \
               f"{r.duration:7.2f} s"
        lines.append(f"{line}  {r.error}" if r.error else line)
    failed = sum(not r.ok for r in results)
    lines.append(f"{len(results)} hosts: {len(results) - failed} ok, {failed} failed")
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace) -> int:
    if args.jobs < 1 or args.timeout <= 0:
        print("hostagent: -j must be at least 1 and --timeout positive", file=sys.stderr)
        return EXIT_USAGE
    try:
        targets = read_hosts(args.hosts, args.hosts_file, args.user, args.keys)
    except (OSError, ValueError) as exc:
        print(f"hostagent: hosts: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not targets:
        print("hostagent: no hosts: give -H HOST or --hosts-file FILE", file=sys.stderr)
        return EXIT_USAGE
    if args.insecure_ignore_host_keys:
        print("hostagent: warning: host keys are NOT verified", file=sys.stderr)
    console = Console(len(targets), sys.stdout.buffer, sys.stderr.buffer, sys.stderr.isatty())

    async def run() -> int:
        results = await run_hosts(targets, " ".join(args.remote_command), args, console)
        console.end()
        sys.stderr.write(summary(results))
        return EXIT_OK if all(r.ok for r in results) else EXIT_FAILED

    return runloop.run(run())
