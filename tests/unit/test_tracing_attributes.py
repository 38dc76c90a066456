"""Span attributes pass an allow-list, whichever way they are set."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider

from core.observability import tracing


def test_span_and_set_attribute_refuse_names_off_the_allow_list() -> None:
    span = TracerProvider().get_tracer("t").start_span("s")
    tracing.set_attribute(span, "transfer.id", "abc")
    assert span.attributes is not None and span.attributes["transfer.id"] == "abc"
    with pytest.raises(ValueError, match="allow-list"):
        tracing.set_attribute(span, "user.pin", "1234")
    with pytest.raises(ValueError, match="allow-list"), tracing.span("x", user_password="p"):
        pass
