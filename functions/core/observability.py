"""Logging for every deployable: Powertools Logger (JSON, correlation id), created on first use.

Importing Powertools costs ~100-300 ms, so nothing here imports it at module level: the API and worker modules
stay light to import (bench/cold_start.py) and SnapStart's before-snapshot hook calls `get_logger()` to warm it.
"""

from __future__ import annotations

import json
import logging
import threading
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger

SERVICE = "ministudio"
# The request id (API) or message id (workers) of the work in hand. A ContextVar, not a logger key: the local
# runtime serves requests and runs workers in one process, on many threads, with one logger.
correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)


class _CorrelationFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        value = correlation_id.get()
        if value is not None and not hasattr(record, "correlation_id"):
            record.correlation_id = value
        return True


_lock = threading.Lock()
_logger: Logger | None = None


class DailyJsonFileHandler(logging.Handler):
    """Appends each record as one JSON line to `{dir}/ministudio-YYYY-MM-DD.jsonl` (the seed's daily log files)."""

    def __init__(self, directory: str) -> None:
        super().__init__()
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            day = datetime.now(UTC).strftime("%Y-%m-%d")
            with open(self.directory / f"ministudio-{day}.jsonl", "a", encoding="utf-8") as handle:
                handle.write(line if line.startswith("{") else json.dumps({"message": line}))
                handle.write("\n")
        except Exception:  # a full disk must not take a request down with it
            self.handleError(record)


def get_logger() -> Logger:
    global _logger
    if _logger is None:
        with _lock:
            if _logger is None:
                from aws_lambda_powertools import Logger

                from functions.core.settings import get_settings

                settings = get_settings()
                logger = Logger(service=SERVICE, level=settings.log_level)
                logger.setLevel(settings.log_level)  # Powertools keeps an earlier Logger's level for the same service
                logger.append_keys(environment=settings.environment)  # dev and prod share log tooling
                logger.addFilter(_CorrelationFilter())
                _logger = logger
                if settings.log_dir:
                    log_to_directory(settings.log_dir)
    return _logger


def log_to_directory(directory: str) -> None:
    """Also write every log line to daily JSON files in directory (the local platform's `logs/`); idempotent."""
    logger = get_logger()
    target = str(Path(directory).resolve())
    if any(isinstance(h, DailyJsonFileHandler) and str(h.directory.resolve()) == target for h in logger.handlers):
        return
    handler = DailyJsonFileHandler(directory)
    # Reuse Powertools' JSON formatter so file lines match what CloudWatch gets.
    handler.setFormatter(logger.registered_formatter)
    logger.addHandler(handler)


def log(level: str, message: str, **fields: Any) -> None:
    getattr(get_logger(), level)(message, extra=fields, stacklevel=3)
