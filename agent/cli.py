"""Command line: argv -> config -> Agent. Exit codes: 0 ok, 1 failed run, 2 bad usage or config,
3 cannot start (e.g. cannot bind)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from agent import __version__, logs, runloop, webconfig
from agent.config import Config, ConfigError, ConfigSource, load
from agent.exposition.formats import TEXT
from agent.exposition.status import human_duration
from agent.flags import add_runtime_flags, flag_for, overrides
from agent.relay import cli as relay_cli

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_START = 0, 1, 2, 3
COMMANDS = ("run", "check-config", "collect", "profile", "ssh", "relay", "remediation")


def parser(command: str | None = None) -> argparse.ArgumentParser:
    """command: the one about to run; the SSH batch tool's arguments are added only for it
    (or for all, None), so an agent does not load that tool."""
    top = argparse.ArgumentParser(
        prog="hostagent", description="Host metrics agent for Prometheus. `hostagent run "
        "--help` lists every flag, with node_exporter's names, grouped per collector.")
    top.add_argument("--version", action="version", version=f"hostagent {__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_runtime_flags(sub.add_parser("run", help="run the agent (the default command)"))
    check = sub.add_parser("check-config", help="validate a configuration file and exit")
    check.add_argument("file", type=Path, metavar="FILE")
    collect = sub.add_parser("collect", help="print one exposition to stdout and exit")
    collect.add_argument("--once", action="store_true", required=True,
                         help="run every enabled collector once")
    add_runtime_flags(collect)
    profile = sub.add_parser("profile", help="fetch a CPU profile (folded stacks) from a running "
                             "agent with debug.enabled")
    profile.add_argument("--url", required=True, help="the agent, e.g. http://127.0.0.1:9110")
    profile.add_argument("--seconds", type=float, default=10, metavar="N",
                         help="how long to sample (1-60, default 10)")
    profile.add_argument("--hz", type=float, default=100, metavar="M",
                         help="samples per second (1-1000, default 100)")
    profile.add_argument("-o", "--output", type=Path, metavar="FILE",
                         help="write the folded stacks here instead of stdout")
    ssh = sub.add_parser("ssh", help="SSH tools").add_subparsers(
        dest="ssh_command", required=True, metavar="SUBCOMMAND")
    ssh_exec = ssh.add_parser(
        "exec", help="run a command on many hosts: hostagent ssh exec -H HOST ... -- COMMAND")
    if command in (None, "ssh"):
        from agent.ssh import exec_cmd

        exec_cmd.add_arguments(ssh_exec)
    relay_cli.add_arguments(sub.add_parser(
        "relay", help="relay Alertmanager notifications to WeCom and DingTalk robots"))
    remediation = sub.add_parser("remediation", help="self-healing rules").add_subparsers(
        dest="remediation_command", required=True, metavar="SUBCOMMAND")
    trial = remediation.add_parser("test", help="evaluate a rule once and print what would run")
    trial.add_argument("rule", metavar="RULE")
    add_runtime_flags(trial)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0].startswith("-")
                    and argv[0] not in ("-h", "--help", "--version")):
        argv.insert(0, "run")
    args = parser(argv[0]).parse_args(argv)
    if args.command == "profile":
        return _profile(args.url, args.seconds, args.hz, args.output)
    if args.command == "ssh":
        from agent.ssh import exec_cmd

        return exec_cmd.main(args)
    if args.command == "relay":
        return relay_cli.main(args)
    try:
        if args.command == "check-config":
            checked = load(args.file)
            webconfig.load(checked.web.config_file)
            print(f"{args.file}: ok")
            return EXIT_OK
        source = ConfigSource(args.config, overrides(args), flag_for)
        config = source.load()
    except ConfigError as exc:
        for problem in exc.shown:
            print(problem, file=sys.stderr)
        return EXIT_USAGE
    if args.command == "run":
        from agent import memory

        memory.tune()  # before the first thread (the log writer's), so that all share an arena
    logs.setup(config.logging.level, config.logging.format)
    if args.command == "collect":
        return runloop.run(_collect_once(config))
    if args.command == "remediation":
        from agent.remediation.trial import test_rule

        return runloop.run(test_rule(config, args.rule))
    return _serve(config, source)


def _serve(config: Config, source: ConfigSource) -> int:
    from agent.agent import Agent, StartupError

    async def serve() -> int:
        return await Agent(config, source=source).run()

    try:
        return runloop.run(serve())
    except StartupError as exc:
        print(f"hostagent: {exc}", file=sys.stderr)
        return EXIT_START
    except ConfigError as exc:  # the web configuration file, read as the agent starts
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_USAGE


async def _collect_once(config: Config) -> int:
    from agent.agent import Agent

    agent = Agent(config)
    await agent.scheduler.run_all_once()
    statuses = agent.scheduler.statuses()
    failed = [s for s in statuses if not s.success]
    for status in failed:
        print(f"collector {status.name} failed: {status.last_error}", file=sys.stderr)
    print("collected in " + ", ".join(
        f"{s.name} {human_duration(s.last_duration or 0.0)}" for s in statuses if s.success),
        file=sys.stderr)
    agent.demand.add(TEXT)
    sys.stdout.buffer.write(agent.renderer.render_now().bodies[TEXT].plain)
    sys.stdout.flush()
    return EXIT_FAILED if failed else EXIT_OK


def _profile(url: str, seconds: float, hz: float, output: Path | None) -> int:
    import urllib.error  # here: an agent never needs urllib's client (http.client, email)
    import urllib.request

    if not url.startswith(("http://", "https://")):
        print(f"hostagent: --url must look like http://HOST:PORT, got {url!r}", file=sys.stderr)
        return EXIT_USAGE
    query = f"{url.rstrip('/')}/debug/profile?seconds={seconds:g}&hz={hz:g}"
    try:
        with urllib.request.urlopen(query, timeout=seconds + 10) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            print(f"hostagent: debug endpoints are off on {url} (set debug.enabled: true)",
                  file=sys.stderr)
        else:
            reason = exc.read().decode(errors="replace").strip() or exc.reason
            print(f"hostagent: {url}: HTTP {exc.code}: {reason}", file=sys.stderr)
        return EXIT_FAILED
    except (OSError, ValueError) as exc:  # URLError, timeouts, a malformed URL
        cause = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        print(f"hostagent: cannot fetch a profile from {url}: {cause}", file=sys.stderr)
        return EXIT_FAILED
    if output is None:
        sys.stdout.buffer.write(body)
        sys.stdout.flush()
        return EXIT_OK
    try:
        output.write_bytes(body)
    except OSError as exc:
        print(f"hostagent: cannot write {output}: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILED
    stacks = body.count(b"\n")
    print(f"wrote {stacks} stacks to {output}", file=sys.stderr)
    return EXIT_OK
