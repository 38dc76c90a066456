"""One logical call, retried: network errors, 429/503 (honouring Retry-After) and other 5xx, with
exponential backoff and full jitter, bounded in attempts and in total time. A 4xx other than 429
is never retried. The caller gives the Idempotency-Key once per logical call, so every retry of a
money-moving POST carries the same key and the server answers a retry with the first result."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from bank_sdk.errors import BankError, TransportFailed, error_for

RETRY_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5  # the first try included
    max_total_seconds: float = 30.0
    base_delay: float = 0.25
    max_delay: float = 8.0

    def delay(self, attempt: int, retry_after: float | None, rand: Callable[[], float] = random.random) -> float:
        """Before attempt ``attempt + 1``: full jitter over an exponential ceiling, or the server's Retry-After."""
        if retry_after is not None:
            return min(retry_after, self.max_delay * 8)
        return rand() * min(self.max_delay, self.base_delay * 2.0**attempt)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _problem(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        return body
    return {"code": "INTERNAL_ERROR" if response.status_code >= 500 else "BAD_REQUEST", "detail": response.text[:500]}


def send(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    policy: RetryPolicy,
    headers: dict[str, str] | None = None,
    json: Any = None,
    params: Any = None,
    sleep: Callable[[float], None] = time.sleep,
) -> httpx.Response:
    """The answer to one logical call (2xx, or a 3xx/4xx/5xx raised as its problem's exception)."""
    started = time.monotonic()
    last: BankError | None = None
    for attempt in range(policy.max_attempts):
        retry_after: float | None = None
        try:
            response = client.request(method, url, headers=headers, json=json, params=params)
        except httpx.TransportError as exc:  # refused, reset, dropped mid-answer, timed out
            last = TransportFailed({"code": "TRANSPORT_FAILED", "detail": repr(exc)}, 0)
        else:
            if response.status_code < 400:
                return response
            error = error_for(_problem(response), response.status_code)
            if response.status_code < 500 and response.status_code not in RETRY_STATUSES:
                raise error
            last, retry_after = error, _retry_after(response)
        wait = policy.delay(attempt, retry_after)
        if attempt + 1 >= policy.max_attempts or time.monotonic() - started + wait > policy.max_total_seconds:
            break
        sleep(wait)
    assert last is not None
    raise last
