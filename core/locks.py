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
from redis.lock import Lock

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


class AccountLocks:
    """One Redis lock per account (sorted), each with its own token and TTL.

    redis-py's ``Lock`` releases with a Lua compare-and-delete, so a worker never frees
    a lock that expired and was taken by someone else.
    """

    def __init__(self, redis: Redis, account_ids: Iterable[uuid.UUID], *, ttl: float, wait: float) -> None:
        self.redis, self.ttl, self.wait = redis, ttl, wait
        self.stats = LockStats(keys=[account_lock_key(a) for a in sorted(set(account_ids))])
        self._held: list[Lock] = []

    def acquire(self) -> LockStats:
        started = time.monotonic()
        try:
            for key in self.stats.keys:
                lock = self.redis.lock(key, timeout=self.ttl, blocking_timeout=self.wait, thread_local=False)
                if not lock.acquire():
                    self.release()
                    raise LockTimeout(key)
                self._held.append(lock)
        except RedisError as exc:
            # Redis is an optimisation: without it, row locks alone still serialise the pair.
            log.warning("account_lock_unavailable", error=type(exc).__name__)
            self.stats.degraded = True
        self.stats.wait_seconds = time.monotonic() - started
        return self.stats

    def release(self) -> None:
        while self._held:
            lock = self._held.pop()
            try:
                lock.release()
            except LockNotOwnedError:
                log.warning("account_lock_expired_before_release", key=lock.name)
            except (LockError, RedisError) as exc:
                log.warning("account_lock_release_failed", key=lock.name, error=type(exc).__name__)


@contextmanager
def account_locks(redis: Redis, account_ids: Iterable[uuid.UUID], *, ttl: float, wait: float) -> Iterator[LockStats]:
    """Hold the accounts' locks for the block (see ``AccountLocks``)."""
    locks = AccountLocks(redis, account_ids, ttl=ttl, wait=wait)
    try:
        yield locks.acquire()
    finally:
        locks.release()
