"""Trace ids from OpenTelemetry when it is installed and a span is active."""

from __future__ import annotations

import importlib.util
from typing import Any

from schemas import Trace

__all__ = ["current_trace", "tracing_available"]

_otel: Any = None
_checked = False


def tracing_available() -> bool:
    """Whether OpenTelemetry is importable (checked once)."""
    current_trace()
    return _otel is not None


def current_trace() -> Trace | None:
    """The active span's W3C trace and span ids, or None (no OpenTelemetry, no span)."""
    global _otel, _checked
    if not _checked:
        _checked = True
        if importlib.util.find_spec("opentelemetry") is not None:
            from opentelemetry import trace

            _otel = trace
    if _otel is None:
        return None
    context = _otel.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return Trace(trace_id=format(context.trace_id, "032x"), span_id=format(context.span_id, "016x"))
