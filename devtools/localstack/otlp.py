"""A minimal OTLP/HTTP trace receiver on loopback, for tests, benchmarks and local runs.

It answers ``POST /v1/traces`` (``application/x-protobuf``) as a collector would and keeps the
decoded spans, flattened, so a test can look at what a real exporter sent.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from devtools.localstack.processes import LOOPBACK

_EMPTY_RESPONSE = ExportTraceServiceResponse().SerializeToString()


@dataclass(frozen=True)
class ReceivedSpan:
    """One exported span, with ids as lowercase hex as they appear in logs."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    start_ns: int = 0
    end_ns: int = 0
    links: list[str] = field(default_factory=list)

    @property
    def duration_ms(self) -> float:
        """End minus start."""
        return (self.end_ns - self.start_ns) / 1e6


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


class OtlpReceiver:
    """``with OtlpReceiver() as r: ... r.endpoint ... r.spans()``; ``decode=False`` only counts."""

    def __init__(self, *, decode: bool = True) -> None:
        self._decode = decode
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self.requests = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server interface
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                receiver._receive(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(_EMPTY_RESPONSE)))
                self.end_headers()
                self.wfile.write(_EMPTY_RESPONSE)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        self._server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        """The value for ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``."""
        return f"http://{LOOPBACK}:{self._server.server_address[1]}/v1/traces"

    def start(self) -> OtlpReceiver:
        """Serve in a daemon thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def spans(self) -> list[ReceivedSpan]:
        """Every span received so far."""
        with self._lock:
            return list(self._spans)

    def _receive(self, body: bytes) -> None:
        with self._lock:
            self.requests += 1
        if not self._decode:
            return
        request = ExportTraceServiceRequest.FromString(body)
        spans = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append(
                        ReceivedSpan(
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            resource=resource,
                            start_ns=span.start_time_unix_nano,
                            end_ns=span.end_time_unix_nano,
                            links=[link.span_id.hex() for link in span.links],
                        )
                    )
        with self._lock:
            self._spans.extend(spans)
