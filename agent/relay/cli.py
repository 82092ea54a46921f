"""`hostagent relay`: run the relay, or check its configuration."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agent import logs, runloop
from agent.config import ConfigError

EXIT_OK, EXIT_USAGE, EXIT_START = 0, 2, 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, metavar="FILE",
                        help="relay configuration (routes, robots, secret files)")
    parser.add_argument("--web.listen-address", dest="listen_address", metavar="HOST:PORT")
    parser.add_argument("--web.config.file", dest="web_config_file", type=Path, metavar="FILE",
                        help="exporter-toolkit web configuration file (TLS, basic auth)")
    parser.add_argument("--log.level", dest="log_level",
                        choices=["debug", "info", "warning", "error"])
    parser.add_argument("--check", action="store_true",
                        help="validate the configuration, its secret files and template, and exit")


def main(args: argparse.Namespace) -> int:
    from agent.relay.config import load
    from agent.relay.server import Relay, StartupError, check

    overrides = {key: value for key, value in (("listen_address", args.listen_address),
                                               ("web.config_file", args.web_config_file),
                                               ("log_level", args.log_level)) if value}
    try:
        if args.check:
            check(args.config, overrides)
            print(f"{args.config}: ok")
            return EXIT_OK
        config = load(args.config, overrides)
        logs.setup(config.log_level)

        async def serve() -> int:
            return await Relay(config, source=lambda: load(args.config, overrides)).run()

        return runloop.run(serve())
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_USAGE
    except StartupError as exc:
        print(f"hostagent relay: {exc}", file=sys.stderr)
        return EXIT_START
