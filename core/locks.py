"""Redis locks on accounts: they cut contention, they do not guard money.

Postgres row locks (``SELECT ... FOR UPDATE``) and the conditional status transition
keep balances right even if a lock expires or Redis is down; these locks only keep two
workers from queueing on the same rows. One key per account, taken in sorted order, so
A->B and A->C exclude each other on A and crossing pairs cannot deadlock.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import structlog
from redis import Redis
from redis.exceptions import LockError, LockNotOwnedError, RedisError

log = structlog.get_logger(__name__)


class LockTimeout(Exception):
    """Another worker held an account lock for longer than we were willing to wait."""


@dataclass
class LockStats:
    wait_seconds: float = 0.0
    degraded: bool = False  # Redis unreachable: ran on row locks alone
    keys: list[str] = field(default_factory=list)


def account_lock_key(account_id: uuid.UUID) -> str:
    return f"lock:account:{account_id}"


@contextmanager
def account_locks(redis: Redis, account_ids: Iterable[uuid.UUID], *, ttl: float, wait: float) -> Iterator[LockStats]:
    """Hold one Redis lock per account (sorted), each with its own token and TTL.

    redis-py's ``Lock`` releases with a Lua compare-and-delete, so a worker never frees
    a lock that expired and was taken by someone else.
    """
    stats = LockStats(keys=[account_lock_key(a) for a in sorted(set(account_ids))])
    held = []
    started = time.monotonic()
    try:
        try:
            for key in stats.keys:
                lock = redis.lock(key, timeout=ttl, blocking_timeout=wait, thread_local=False)
                if not lock.acquire():
                    raise LockTimeout(key)
                held.append(lock)
        except RedisError as exc:
            # Redis is an optimisation: without it, row locks alone still serialise the pair.
            log.warning("account_lock_unavailable", error=type(exc).__name__)
            stats.degraded = True
        stats.wait_seconds = time.monotonic() - started
        yield stats
    finally:
        for lock in reversed(held):
            try:
                lock.release()
            except LockNotOwnedError:
                log.warning("account_lock_expired_before_release", key=lock.name)
            except (LockError, RedisError) as exc:
                log.warning("account_lock_release_failed", key=lock.name, error=type(exc).__name__)
