"""At most N attempts in flight per endpoint, across every webhook worker process.

A slow or hanging receiver then holds at most N worker processes, whatever its backlog or
however often its owner presses "retry", and other partners' deliveries keep flowing. A slot is
a Redis key with a token and a TTL longer than any attempt (a crashed worker's slot expires);
its holder drains the endpoint's due deliveries for a while, so a busy endpoint does not wait a
dispatcher tick per delivery. Without Redis every attempt runs (fairness is lost, nothing else).
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass

import structlog
from redis import Redis
from redis.exceptions import RedisError

log = structlog.get_logger(__name__)

# Deletes the slot only while it still holds our token (an expired one may be another's now).
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


@dataclass(frozen=True)
class Slot:
    key: str | None  # None: Redis was unreachable, the attempt runs unlimited
    token: str


def _key(endpoint_id: uuid.UUID, index: int) -> str:
    return f"webhook:slot:{endpoint_id}:{index}"


def acquire(redis: Redis, endpoint_id: uuid.UUID, *, limit: int, ttl_seconds: float) -> Slot | None:
    """One of the endpoint's ``limit`` slots, or None when all are taken."""
    token = secrets.token_hex(16)
    try:
        for index in range(limit):
            key = _key(endpoint_id, index)
            if redis.set(key, token, nx=True, px=max(1, int(ttl_seconds * 1000))):
                return Slot(key, token)
    except RedisError as exc:
        log.warning("webhook_slot_unavailable", error=type(exc).__name__)
        return Slot(None, token)
    return None


def release(redis: Redis, slot: Slot) -> None:
    if slot.key is None:
        return
    try:
        redis.eval(_RELEASE, 1, slot.key, slot.token)
    except RedisError as exc:
        log.warning("webhook_slot_release_failed", error=type(exc).__name__)  # it expires by TTL
