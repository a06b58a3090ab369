"""JSON log lines carry the current span's ids; gunicorn's own lines use the same formatter."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import sys
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from service.observability.logs import JsonFormatter, configure_logging, gunicorn_logconfig


def record(message: str, exc_info: bool = False) -> logging.LogRecord:
    info = sys.exc_info() if exc_info else None
    return logging.LogRecord("memoserve.test", logging.WARNING, __file__, 1, message, (), info)


def test_a_line_outside_a_span() -> None:
    line = json.loads(JsonFormatter().format(record("cache %s", exc_info=False)))
    assert line["level"] == "WARNING"
    assert line["logger"] == "memoserve.test"
    assert line["message"] == "cache %s"
    assert line["time"].endswith("+00:00")
    assert "trace_id" not in line


def test_a_line_inside_a_span_names_it(exported: InMemorySpanExporter) -> None:
    with trace.get_tracer("test").start_as_current_span("work") as span:
        line = json.loads(JsonFormatter().format(record("inside")))
    context = span.get_span_context()
    assert line["trace_id"] == f"{context.trace_id:032x}"
    assert line["span_id"] == f"{context.span_id:016x}"
    assert line["trace_sampled"] is True


def test_exceptions_are_one_field() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        line = json.loads(JsonFormatter().format(record("failed", exc_info=True)))
    assert "ValueError: boom" in line["exception"]
    assert line["message"] == "failed"


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


def test_configure_logging(root_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    configure_logging("warning")
    assert root_logger.level == logging.WARNING
    logging.getLogger("memoserve.x").info("dropped")
    logging.getLogger("memoserve.x").warning("kept")
    (line,) = stream.getvalue().splitlines()
    assert json.loads(line)["message"] == "kept"


def test_gunicorn_logconfig_is_a_valid_dict_config() -> None:
    config = gunicorn_logconfig("debug")
    factory = logging.config.BaseConfigurator({}).resolve(config["formatters"]["json"]["()"])
    assert factory is JsonFormatter
    assert config["root"]["level"] == "DEBUG"
    assert config["loggers"]["gunicorn.error"]["propagate"] is False
    handlers = set(config["handlers"])
    for logger in (config["root"], *config["loggers"].values()):
        assert set(logger["handlers"]) <= handlers
        for name in logger["handlers"]:
            assert config["handlers"][name]["formatter"] == "json"
