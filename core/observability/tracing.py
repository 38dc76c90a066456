"""OpenTelemetry: off (no provider, no overhead) unless OTEL_EXPORTER_OTLP_ENDPOINT is set.

Domain steps get spans through ``span()``; attributes pass through an allow-list of
names so a PIN, password, token or secret can never become a span attribute.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from opentelemetry import trace

tracer = trace.get_tracer("bank")

# Only what the code sets: an attribute is added here when a span needs it, and never one
# that could hold a secret or a person's data.
SAFE_ATTRIBUTES = frozenset({"transfer.id", "transfer.count", "account.count", "settle.partition"})


def enabled() -> bool:
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


_configured = False  # configure() installed a provider in this process: spans are recorded


def configure(service_name: str) -> bool:
    """Install a tracer provider exporting OTLP/HTTP in batches. Returns False when tracing is off."""
    global _configured
    if not enabled():
        return False
    _configured = True
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return True


def _safe(attributes: dict[str, Any]) -> dict[str, Any]:
    unknown = set(attributes) - SAFE_ATTRIBUTES
    if unknown:
        raise ValueError(f"span attributes not on the allow-list: {sorted(unknown)}")
    return {k: str(v) if not isinstance(v, bool | int | float) else v for k, v in attributes.items() if v is not None}


# What span() gives while tracing is off: OpenTelemetry's no-op span, without a context made and
# attached for it (~18 us per span through the API's proxy tracer, measured; nothing is recorded).
_OFF = nullcontext(trace.INVALID_SPAN)


def span(name: str, **attributes: Any) -> AbstractContextManager[trace.Span]:
    """A span for a domain step; keyword names use '_' for '.', e.g. transfer_id=..."""
    attrs = _safe({k.replace("_", ".", 1): v for k, v in attributes.items()})
    if not _configured:
        return _OFF
    return tracer.start_as_current_span(name, attributes=attrs)


def set_attribute(s: trace.Span, name: str, value: Any) -> None:
    """Add an attribute to an open span, through the same allow-list as ``span()``."""
    for key, safe in _safe({name: value}).items():
        s.set_attribute(key, safe)


def current_ids() -> tuple[str | None, str | None]:
    """(trace_id, span_id) of the current span as hex, or (None, None) outside a trace."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None, None
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"
