"""The webhook transport over HTTP (httpx): POST the signed message to a checked address, and
say what the receiver's status meant (core.webhooks.transport.Answer).

SSRF: core has already checked the URL and resolved its host (core.webhooks.urls.destination);
this module dials only those addresses, never resolves the name again, follows no redirect and
reads no proxy or .netrc from the environment.
"""

from __future__ import annotations

import functools
import logging
import ssl
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import certifi
import httpx

from core.webhooks.transport import Answer, Reply, SignedMessage, TransportError

# httpx logs every request's full URL at INFO; a partner's URL may carry a token in its query.
logging.getLogger("httpx").setLevel(logging.WARNING)

# Standard Webhooks: 410 Gone asks the sender to stop; 429 and 503 may say when to come back.
GONE = 410
ASKS_TO_WAIT = frozenset({429, 503})


class HttpTransport:
    """:class:`core.webhooks.transport.Transport` over HTTP/1.1 with httpx."""

    def send(self, message: SignedMessage) -> Reply:
        try:
            status, body, retry_after = _post_pinned(message)
        except httpx.TimeoutException as exc:
            raise TransportError("timeout") from exc
        except httpx.HTTPError as exc:
            raise TransportError(type(exc).__name__) from exc
        return reply(status, body, retry_after, now=datetime.now(UTC))


def reply(status: int, body: str, retry_after: str | None, *, now: datetime) -> Reply:
    """The receiver's HTTP answer as a domain one."""
    if 200 <= status < 300:
        return Reply(Answer.ACCEPTED, status, body)
    if status == GONE:
        return Reply(Answer.GONE, status, body)
    wait = parse_retry_after(retry_after, now) if status in ASKS_TO_WAIT else None
    return Reply(Answer.REFUSED, status, body, retry_after=wait)


def parse_retry_after(value: str | None, now: datetime) -> timedelta | None:
    """RFC 9110 Retry-After: delay-seconds or an HTTP date. Garbage or the past is ignored."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        delay = timedelta(seconds=int(value))
    else:
        try:
            delay = parsedate_to_datetime(value) - now
        except (TypeError, ValueError):
            return None
    return delay if delay > timedelta(0) else None


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One verifying TLS context for every attempt, as httpx would build it (certifi's CAs). Each
    new client built its own, loading the CA bundle: ~300 ms of a ~325 ms attempt to a local
    receiver on the busy test machine (24 ms with this one), which held webhook delivery near 1.6
    per second under the jepsen tier's load (README "Failure model"). A context is safe to share."""
    return ssl.create_default_context(cafile=certifi.where())


def _post_pinned(message: SignedMessage) -> tuple[int, str, str | None]:
    """POST to the checked addresses themselves, in turn until one accepts the connection.

    The URL's host is replaced by the address, so nothing resolves the name again; the Host
    header and TLS (SNI, certificate hostname check) still use the name the partner registered.
    """
    url = httpx.URL(message.url)
    headers = {**message.headers, "host": url.netloc.decode("ascii")}
    extensions = {"sni_hostname": message.destination.host} if url.scheme == "https" else {}
    addresses = message.destination.addresses
    # No redirects (a 3xx could point inside the network), no proxies or .netrc from the environment.
    with httpx.Client(timeout=message.timeout, follow_redirects=False, trust_env=False, verify=tls_context()) as client:
        for i, address in enumerate(addresses):
            try:
                with client.stream(
                    "POST",
                    url.copy_with(host=address),
                    content=message.body,
                    headers=headers,
                    extensions=extensions,
                ) as response:
                    body = _read_prefix(response, message.body_limit)
                    return response.status_code, body, response.headers.get("retry-after")
            except httpx.ConnectError:
                if i == len(addresses) - 1:
                    raise
    raise httpx.ConnectError("no address to connect to")


def _read_prefix(response: httpx.Response, limit: int) -> str:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break  # the rest is not read: a huge answer cannot hold the worker
    return b"".join(chunks)[:limit].decode("utf-8", errors="replace")
