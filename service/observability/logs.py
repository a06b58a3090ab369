"""JSON log lines carrying the current span's ``trace_id`` and ``span_id``.

Imported by the gunicorn master through ``logconfig_dict``: stdlib, orjson and the OpenTelemetry
API only (the API without an SDK is inert).
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson
from opentelemetry import trace


def trace_fields(entry: dict[str, Any]) -> None:
    """Add the current span's ids to ``entry`` (nothing outside a span)."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        entry["trace_id"] = format(context.trace_id, "032x")
        entry["span_id"] = format(context.span_id, "016x")
        entry["trace_sampled"] = context.trace_flags.sampled


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, pid, trace and span ids."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        trace_fields(entry)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str) -> None:
    """Root logger at ``level`` with one JSON handler on stderr (replacing any others)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())


def gunicorn_logconfig(level: str) -> dict[str, Any]:
    """gunicorn's ``logconfig_dict``: its own lines (master and workers) as JSON too."""
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "service.observability.logs.JsonFormatter"}},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stdout",
            },
            "error_console": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            },
        },
        "root": {"level": level, "handlers": ["error_console"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": ["error_console"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": False},
        },
    }
