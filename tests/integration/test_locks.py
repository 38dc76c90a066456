"""Redis account locks against a real Redis: exclusion per account, owner-only release."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
from redis import Redis

from core.locks import LockTimeout, account_lock_key, account_locks
from tests.waits import wait_for


def test_pairs_sharing_an_account_exclude_each_other(redis_client) -> None:  # type: ignore[no-untyped-def]
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    with account_locks(redis_client, [a, b], ttl=5, wait=1):
        with pytest.raises(LockTimeout), account_locks(redis_client, [c, a], ttl=5, wait=0.2):
            pass
        # A pair with no account in common is not blocked.
        with account_locks(redis_client, [c, uuid.uuid4()], ttl=5, wait=0.2):
            pass
    # Released: the waiter gets in now, and a failed attempt left nothing behind.
    with account_locks(redis_client, [c, a], ttl=5, wait=0.2):
        pass
    assert redis_client.exists(account_lock_key(a), account_lock_key(c)) == 0


def test_expired_lock_is_not_released_by_its_former_owner(redis_client) -> None:  # type: ignore[no-untyped-def]
    a = uuid.uuid4()
    key = account_lock_key(a)
    with account_locks(redis_client, [a], ttl=0.2, wait=1):
        wait_for("our lock to expire", lambda: not redis_client.exists(key), timeout=5, interval=0.02)  # ...
        taken = redis_client.lock(key, timeout=5)
        assert taken.acquire(blocking=False)  # ...and another worker takes it
    # Leaving our block must not have deleted the other worker's lock.
    assert redis_client.get(key) == taken.local.token
    taken.release()


def test_waiter_gets_the_lock_when_the_holder_releases(redis_client) -> None:  # type: ignore[no-untyped-def]
    a = uuid.uuid4()
    order: list[str] = []
    held = threading.Event()

    def holder() -> None:
        with account_locks(redis_client, [a], ttl=5, wait=1):
            held.set()
            time.sleep(0.3)  # the fault itself: a holder that keeps the lock a while, which the waiter waits out
            order.append("holder-done")

    t = threading.Thread(target=holder)
    t.start()
    held.wait()
    with account_locks(redis_client, [a], ttl=5, wait=3) as stats:
        order.append("waiter-in")
    t.join()
    assert order == ["holder-done", "waiter-in"]
    assert stats.wait_seconds > 0.1


class _WaitWatcher:
    """The Redis client, noting when a lock taker starts to wait: it found a key taken and
    sleeps on that key's release signal (BLPOP)."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self.waiting = threading.Event()

    def blpop(self, *args: Any, **kwargs: Any) -> Any:
        self.waiting.set()
        return self._redis.blpop(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._redis, name)


def test_a_waiter_holds_none_of_its_accounts_while_it_waits(redis_client) -> None:  # type: ignore[no-untyped-def]
    """All or nothing: a batch waiting for one busy account must not block the others."""
    first, busy = sorted([uuid.uuid4(), uuid.uuid4()])  # the waiter would take `first` first in sorted order
    watched = _WaitWatcher(redis_client)
    result: dict[str, object] = {}

    def waiter() -> None:
        with account_locks(watched, [first, busy], ttl=5, wait=3) as stats:  # type: ignore[arg-type]
            result["wait"] = stats.wait_seconds

    with account_locks(redis_client, [busy], ttl=5, wait=1):
        t = threading.Thread(target=waiter)
        t.start()
        wait_for("the waiter to find `busy` taken and wait for its release", watched.waiting.is_set, timeout=5)
        assert redis_client.exists(account_lock_key(first)) == 0
        with account_locks(redis_client, [first], ttl=5, wait=0.1):  # free for anyone meanwhile
            pass
    t.join(5)
    assert "wait" in result  # and the waiter got both once `busy` was released


def test_one_waiting_nudge_per_partition(redis_client) -> None:  # type: ignore[no-untyped-def]
    from core.transfers import nudges

    partition = 900 + uuid.uuid4().int % 100
    nudges.release_nudge(redis_client, partition)
    assert nudges.claim_nudge(redis_client, partition)  # the first accept publishes
    assert not nudges.claim_nudge(redis_client, partition)  # later ones ride on the waiting nudge
    nudges.release_nudge(redis_client, partition)  # its drainer is about to look
    assert nudges.claim_nudge(redis_client, partition)  # so the next accept publishes again
    nudges.release_nudge(redis_client, partition)
