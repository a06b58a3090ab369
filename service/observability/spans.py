"""The spans of the request path: ``cache.lookup``, ``model.predict``, ``cache.store`` and
``coalesce.wait``, children of the request's server span.

A span is only started when its parent records, so a request that is not sampled (or a worker
with tracing off) pays one context lookup per would-be span and builds no attributes.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN, Link, Span, StatusCode

from service.models.loaded import LoadedModel

if TYPE_CHECKING:
    from service.cache.tiered import Lookup

_tracer = trace.get_tracer("memoserve")
_NOT_RECORDING: AbstractContextManager[Span] = nullcontext(INVALID_SPAN)


def child_span(name: str) -> AbstractContextManager[Span]:
    """A span under the current one when it records; otherwise a reusable no-op yielding a
    non-recording span (no context switch, no allocation)."""
    if not trace.get_current_span().is_recording():
        return _NOT_RECORDING
    return _tracer.start_as_current_span(name)


def background_span(name: str) -> AbstractContextManager[Span]:
    """Like :func:`child_span`, for a background task the request may not outlive: its parent
    may have ended already, so the test is the sampled flag, not ``is_recording``."""
    if not trace.get_current_span().get_span_context().trace_flags.sampled:
        return _NOT_RECORDING
    return _tracer.start_as_current_span(name)


def batch_span(name: str, requests: Sequence[Span]) -> AbstractContextManager[Span]:
    """A span for work done on behalf of several requests (a model call in the batcher).

    Its parent is the first recording request span, so a sampled request sees the model call
    in its own trace; the other sampled requests are linked.
    """
    recording = [s for s in requests if s.is_recording()]
    if not recording:
        return _NOT_RECORDING
    links = [Link(s.get_span_context()) for s in recording[1:]]
    parent = trace.set_span_in_context(recording[0])
    return _tracer.start_as_current_span(name, context=parent, links=links)


def model_attributes(span: Span, model: LoadedModel) -> None:
    """``model.name`` and ``model.version`` on ``span``."""
    span.set_attribute("model.name", model.name)
    span.set_attribute("model.version", model.version)


def annotate_arm(arm: str, model: LoadedModel) -> None:
    """``model.arm`` and ``model.version`` on the request's span, when it records."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute("model.arm", arm)
        model_attributes(span, model)


def annotate_lookup(span: Span, model: LoadedModel, lookup: Lookup, arm: str = "champion") -> None:
    """The ``cache.lookup`` attributes: ``cache.outcome`` as ``X-Cache`` says it, ``cache.hit``
    for one row, ``cache.hits`` and ``cache.misses`` for several; ``cache.layer`` is the
    deepest layer asked; ``model.arm`` the arm that answered."""
    n = len(lookup.values)
    if n == 1:
        span.set_attribute("cache.hit", lookup.hits == 1)
    else:
        span.set_attribute("cache.hits", lookup.hits)
        span.set_attribute("cache.misses", n - lookup.hits)
    span.set_attribute("cache.outcome", lookup.outcome.value)
    span.set_attribute("cache.layer", lookup.layer)
    span.set_attribute("model.arm", arm)
    model_attributes(span, model)
    if lookup.bypass:
        span.set_attribute("cache.error", True)
        span.set_status(StatusCode.ERROR, "shared cache unavailable: answered without it")
