"""structlog JSON logs for every process, with secrets redacted at any depth."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from functools import lru_cache
from typing import Any

import structlog

from core.observability.tracing import current_ids

SENSITIVE_PARTS = ("password", "pin", "token", "secret", "authorization", "cookie", "otp")
SENSITIVE_EXACT = {"code", "otp_code"}
NOT_SENSITIVE = {"pin_set", "otp_enabled", "token_type"}
REDACTED = "[REDACTED]"


@lru_cache(maxsize=4096)  # every log line of every transfer asks about the same few keys
def _is_sensitive(key: str) -> bool:
    k = key.lower()
    if k in NOT_SENSITIVE:
        return False
    return k in SENSITIVE_EXACT or any(part in k for part in SENSITIVE_PARTS)


def redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: REDACTED if isinstance(k, str) and _is_sensitive(k) else redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact(v) for v in value)
    return value


def redact_processor(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    return redact(dict(event_dict))


def add_trace_ids(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    trace_id, span_id = current_ids()
    if trace_id:
        event_dict.setdefault("trace_id", trace_id)
        event_dict.setdefault("span_id", span_id)
    return event_dict


def configure(level: str = "INFO") -> None:
    """JSON lines on stdout; stdlib loggers (gunicorn, celery, sqlalchemy) go through the same chain."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        add_trace_ids,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_processor,
    ]
    structlog.configure(
        # A call below the level stops here, before the processors do any work for a line nobody keeps.
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
