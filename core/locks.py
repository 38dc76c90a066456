"""Redis locks on accounts: they cut contention, they do not guard money.

Postgres row locks (``SELECT ... FOR NO KEY UPDATE``) and the conditional status transition
keep balances right even if a lock expires or Redis is down; these locks only keep two
workers from queueing on the same rows. One key per account. A settlement batch takes all of
its accounts at once (all or nothing, in one Lua call), so no worker ever holds some of its
accounts while it waits for others: crossing batches cannot deadlock. A waiter sleeps on the
release signal of the key it found taken (BLPOP) and so wakes as soon as it is released,
instead of polling.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import structlog
from redis import Redis
from redis.exceptions import RedisError

log = structlog.get_logger(__name__)

# Returns 0 when every key was free and is now ours, else the 1-based index of a taken key.
_ACQUIRE = """
for i, key in ipairs(KEYS) do
  if redis.call('exists', key) == 1 then return i end
end
for _, key in ipairs(KEYS) do
  redis.call('set', key, ARGV[1], 'px', ARGV[2])
end
return 0
"""
# KEYS: n lock keys then their n signal keys. Deletes only keys still holding our token (a
# lock that expired and was taken by another worker stays theirs) and signals each release.
_RELEASE = """
local n = #KEYS / 2
local released = 0
for i = 1, n do
  if redis.call('get', KEYS[i]) == ARGV[1] then
    redis.call('del', KEYS[i])
    redis.call('rpush', KEYS[n + i], '1')
    redis.call('ltrim', KEYS[n + i], -4, -1)
    redis.call('pexpire', KEYS[n + i], ARGV[2])
    released = released + 1
  end
end
return released
"""
# A waiter whose wake-up another waiter took re-checks after this long at the latest.
_MAX_SLEEP = 0.05
_SIGNAL_TTL_MS = 1000


class LockTimeout(Exception):
    """Another worker held an account lock for longer than we were willing to wait."""


@dataclass
class LockStats:
    wait_seconds: float = 0.0
    degraded: bool = False  # Redis unreachable: ran on row locks alone
    keys: list[str] = field(default_factory=list)


def account_lock_key(account_id: uuid.UUID) -> str:
    return f"lock:account:{account_id}"


def _signal_key(lock_key: str) -> str:
    return f"{lock_key}:released"


class AccountLocks:
    """The locks of a set of accounts, taken together with one owner token and one TTL."""

    def __init__(self, redis: Redis, account_ids: Iterable[uuid.UUID], *, ttl: float, wait: float) -> None:
        self.redis, self.ttl, self.wait = redis, ttl, wait
        self.stats = LockStats(keys=[account_lock_key(a) for a in sorted(set(account_ids))])
        self._token = secrets.token_hex(16)
        self._held = False

    def acquire(self) -> LockStats:
        started = time.monotonic()
        deadline = started + self.wait
        ttl_ms = str(max(1, int(self.ttl * 1000)))
        try:
            while self.stats.keys:
                taken = int(self.redis.eval(_ACQUIRE, len(self.stats.keys), *self.stats.keys, self._token, ttl_ms))
                if taken == 0:
                    self._held = True
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise LockTimeout(self.stats.keys[taken - 1])
                self.redis.blpop([_signal_key(self.stats.keys[taken - 1])], timeout=min(remaining, _MAX_SLEEP))
        except RedisError as exc:
            # Redis is an optimisation: without it, row locks alone still serialise the accounts.
            log.warning("account_lock_unavailable", error=type(exc).__name__)
            self.stats.degraded = True
        self.stats.wait_seconds = time.monotonic() - started
        return self.stats

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        keys = self.stats.keys
        try:
            released = int(
                self.redis.eval(_RELEASE, 2 * len(keys), *keys, *map(_signal_key, keys), self._token, _SIGNAL_TTL_MS)
            )
        except RedisError as exc:
            log.warning("account_lock_release_failed", error=type(exc).__name__)  # they expire by TTL
            return
        if released < len(keys):
            log.warning("account_lock_expired_before_release", expired=len(keys) - released)


@contextmanager
def account_locks(redis: Redis, account_ids: Iterable[uuid.UUID], *, ttl: float, wait: float) -> Iterator[LockStats]:
    """Hold the accounts' locks for the block (see ``AccountLocks``)."""
    locks = AccountLocks(redis, account_ids, ttl=ttl, wait=wait)
    try:
        yield locks.acquire()
    finally:
        locks.release()
