"""Redis locks on accounts: they cut contention, they do not guard money.

Postgres row locks (``SELECT ... FOR NO KEY UPDATE``) and the conditional status transition
keep balances right even if a lock expires or Redis is down; these locks only keep two
workers from queueing on the same rows. One key per account. A settlement batch takes all of
its accounts at once (all or nothing, in one Lua call), so no worker ever holds some of its
accounts while it waits for others: crossing batches cannot deadlock. A waiter sleeps on the
release signal of the key it found taken (BLPOP) and so wakes as soon as it is released,
instead of polling.

The locks are leases: a short TTL that a watchdog thread of the holder renews while it holds
them. A holder that dies (kill -9) or is paused (SIGSTOP, a VM freeze) stops renewing with
its process, so its accounts are free again within one TTL; a live holder keeps them as long
as its batch takes (its Postgres timeouts bound that).
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

import structlog
from redis import Redis
from redis.exceptions import RedisError

from core.accounts.row_locks import in_lock_order

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
# KEYS: the lock keys. Extends only the keys still holding our token; returns how many.
_RENEW = """
local renewed = 0
for _, key in ipairs(KEYS) do
  if redis.call('get', key) == ARGV[1] then
    redis.call('pexpire', key, ARGV[2])
    renewed = renewed + 1
  end
end
return renewed
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
    """The leases of a set of accounts, taken together with one owner token.

    ``ttl``: how long the accounts stay locked after the holder stops renewing (it died or is
    paused); the watchdog renews every third of it. ``wait``: how long ``acquire`` waits for
    accounts another worker holds before it raises ``LockTimeout``."""

    def __init__(self, redis: Redis, account_ids: Iterable[uuid.UUID], *, ttl: float, wait: float) -> None:
        self.redis, self.ttl, self.wait = redis, ttl, wait
        self.stats = LockStats(keys=[account_lock_key(a) for a in in_lock_order(account_ids)])
        self._token = secrets.token_hex(16)
        self._ttl_ms = str(max(1, int(ttl * 1000)))
        self._held = False
        self._stop_renewing = threading.Event()
        self._watchdog: threading.Thread | None = None

    def acquire(self) -> LockStats:
        started = time.monotonic()
        deadline = started + self.wait
        keys = self.stats.keys
        try:
            while keys:
                taken = int(self.redis.eval(_ACQUIRE, len(keys), *keys, self._token, self._ttl_ms))
                if taken == 0:
                    self._held = True
                    self._start_watchdog()
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise LockTimeout(keys[taken - 1])
                self.redis.blpop([_signal_key(keys[taken - 1])], timeout=min(remaining, _MAX_SLEEP))
        except RedisError as exc:
            # Redis is an optimisation: without it, row locks alone still serialise the accounts.
            log.warning("account_lock_unavailable", error=type(exc).__name__)
            self.stats.degraded = True
        self.stats.wait_seconds = time.monotonic() - started
        return self.stats

    def renew(self) -> int:
        """Extend the leases still ours by one TTL; returns how many were. Lost ones stay lost:
        another worker may hold them now, and the row locks still guard the money."""
        return int(self.redis.eval(_RENEW, len(self.stats.keys), *self.stats.keys, self._token, self._ttl_ms))

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        self._stop_renewing.set()
        if self._watchdog is not None:
            self._watchdog.join()
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

    def _start_watchdog(self) -> None:
        # A thread of the holder's own process: it stops with the process (killed or paused),
        # which is exactly when the leases must lapse.
        self._watchdog = threading.Thread(target=self._renew_until_released, name="account-lock-lease", daemon=True)
        self._watchdog.start()

    def _renew_until_released(self) -> None:
        while not self._stop_renewing.wait(self.ttl / 3):
            try:
                if self.renew() < len(self.stats.keys):
                    log.warning("account_lock_lease_lost")
                    return
            except RedisError as exc:
                log.warning("account_lock_renew_failed", error=type(exc).__name__)  # tried again next tick
