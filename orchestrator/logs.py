"""structlog set-up: JSON lines for log collectors, readable console output on a terminal.

Every module logs through `structlog.get_logger()`; the level can change at run time when the
operator edits `log_level` in the YAML.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog


def configure_logging(
    level: str = "INFO", *, stream: TextIO | None = None, console: bool | None = None
) -> None:
    out = stream or sys.stderr
    render_console = out.isatty() if console is None else console
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer() if render_console else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
