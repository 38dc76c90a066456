"""What a delivery needs from the network, said without HTTP: send a signed message, get an answer.

Core decides what is sent (the signed message), where to (the checked addresses) and what
follows (core.webhooks.retry); the entry point that talks to the network (worker/http_transport.py)
implements :class:`Transport` and turns the receiver's protocol answer into an :class:`Answer`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

from core.webhooks.urls import Destination


class Answer(enum.StrEnum):
    """What the receiver meant, whatever the protocol said."""

    ACCEPTED = "ACCEPTED"  # it took the message
    GONE = "GONE"  # it asks never to be sent anything again: the endpoint is disabled
    REFUSED = "REFUSED"  # anything else: try again on the schedule (or after ``retry_after``)


@dataclass(frozen=True)
class SignedMessage:
    url: str  # as the partner registered it: names the host for the receiver and for TLS
    destination: Destination  # the checked addresses: the only ones dialled, no second lookup
    headers: Mapping[str, str] = field(repr=False)  # carries the signature
    body: bytes
    timeout: float  # seconds for each network step
    body_limit: int  # bytes of the receiver's answer worth keeping; the rest is not read


@dataclass(frozen=True)
class Reply:
    answer: Answer
    status_code: int  # kept as plain data: recorded with the attempt and shown to the partner
    body: str  # at most ``body_limit`` bytes, decoded
    retry_after: timedelta | None = None  # a REFUSED receiver asked to wait at least this long


class TransportError(Exception):
    """No answer at all (timeout, refused connection, TLS failure)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # short and free of secrets: it is stored with the attempt


class Transport(Protocol):
    def send(self, message: SignedMessage) -> Reply:
        """Deliver ``message`` to one of its destination's addresses, or raise :class:`TransportError`."""
        ...
