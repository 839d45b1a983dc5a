"""Command line: `acestream-orchestrator --config PATH` (also `python -m orchestrator`).

A configuration that is invalid at start-up exits with status 2 and the same one-line error
(file, line, key) that a bad edit produces at run time.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import structlog

from orchestrator.config import Config, load_config
from orchestrator.daemon import Daemon
from orchestrator.errors import ConfigError
from orchestrator.logs import configure_logging

EXIT_CONFIG_ERROR = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="acestream-orchestrator",
        description="Keeps a pool of AceStream engine containers alive behind Gluetun VPNs.",
    )
    parser.add_argument("--config", type=Path, required=True, help="desired-state YAML file")
    parser.add_argument(
        "--docker-url", default=None, help="Docker API address (default: DOCKER_HOST or the local socket)"
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where streams are kept across restarts (default: the YAML's state_dir, "
        "else /var/lib/acestream-orchestrator)",
    )
    parser.add_argument("--check", action="store_true", help="validate the configuration and exit")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        configure_logging("INFO")
        structlog.get_logger().error(
            "config_invalid", error=str(exc), file=exc.source, line=exc.line, key=exc.key
        )
        print(f"acestream-orchestrator: {exc}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    if args.check:
        print(f"{args.config}: OK")
        return 0
    configure_logging(config.log_level)
    asyncio.run(_serve(config, args.config, args.docker_url, args.state_dir))
    return 0


async def _serve(config: Config, path: Path, docker_url: str | None, state_dir: Path | None) -> None:
    await Daemon(config, path, docker_url, state_dir=state_dir).run()


if __name__ == "__main__":
    sys.exit(main())
