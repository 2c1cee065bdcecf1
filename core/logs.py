"""Logging setup: loguru for everything, stdlib logging routed into it.

Only the CLI calls :func:`setup`; library code logs with ``logger.bind(component=...)``
and never adds sinks.
"""

from __future__ import annotations

import logging
import sys

from loguru import logger

TEXT_FORMAT = (
    "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> <level>{level: <7}</level> "
    "<cyan>{extra[component]}</cyan> {message}"
)


class _InterceptHandler(logging.Handler):
    """Hands stdlib records (SQLAlchemy, aiohttp, podman, alembic) to loguru."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.bind(component=record.name).opt(exception=record.exc_info).log(level, record.getMessage())


def setup(level: str = "INFO", fmt: str = "text") -> None:
    logger.remove()
    logger.configure(extra={"component": "kybern"})
    if fmt == "json":
        logger.add(sys.stderr, level=level.upper(), serialize=True)
    else:
        logger.add(sys.stderr, level=level.upper(), format=TEXT_FORMAT, colorize=None)
    logging.basicConfig(handlers=[_InterceptHandler()], level=logging.WARNING, force=True)
    # libraries that are chatty at INFO stay at WARNING unless we debug
    lib_level = logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING
    for name in ("sqlalchemy", "alembic", "aiohttp", "podman", "urllib3", "asyncio"):
        logging.getLogger(name).setLevel(lib_level)
