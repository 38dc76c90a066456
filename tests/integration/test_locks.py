"""Redis account locks against a real Redis: exclusion per account, owner-only release, leases
that a live holder keeps and a dead or paused one loses within a TTL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from redis import Redis

from core.locks import AccountLocks, LockStats, LockTimeout, account_lock_key
from tests.waits import wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@contextmanager
def account_locks(redis: Redis, account_ids: Iterable[uuid.UUID], *, ttl: float, wait: float) -> Iterator[LockStats]:
    """The accounts' leases held for the block, as settlement holds them around a batch."""
    locks = AccountLocks(redis, account_ids, ttl=ttl, wait=wait)
    try:
        yield locks.acquire()
    finally:
        locks.release()


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
    with account_locks(redis_client, [a], ttl=5, wait=1):
        redis_client.pexpire(key, 1)  # our lease lapsed (a pause longer than the TTL)...
        wait_for("our lock to expire", lambda: not redis_client.exists(key), timeout=5, interval=0.02)
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


def test_a_live_holder_keeps_its_lease_past_the_ttl(redis_client) -> None:  # type: ignore[no-untyped-def]
    """The watchdog renews: a batch that takes longer than the TTL keeps its accounts."""
    a = uuid.uuid4()
    with account_locks(redis_client, [a], ttl=0.3, wait=1):
        time.sleep(1.0)  # the fault itself: more than three TTLs of work
        assert redis_client.exists(account_lock_key(a)) == 1
        with pytest.raises(LockTimeout), account_locks(redis_client, [a], ttl=5, wait=0.2):
            pass
    assert redis_client.exists(account_lock_key(a)) == 0  # released at the end, not left to expire


_HOLDER = """
import sys, time, uuid
from redis import Redis
from core.locks import AccountLocks
locks = AccountLocks(Redis.from_url(sys.argv[1]), [uuid.UUID(sys.argv[2])], ttl=float(sys.argv[3]), wait=1)
locks.acquire()
print("held", flush=True)
time.sleep(60)
"""


def test_a_dead_or_paused_holder_frees_its_accounts_within_a_ttl(redis_client, settings) -> None:  # type: ignore[no-untyped-def]
    """Other processes hold leases with the production TTL, then one is killed and one frozen: their
    watchdogs stop with them, and a waiter gets both accounts within about one TTL (it waited the
    whole 30 s lock TTL before leases). Both faults side by side (they were a test each, one TTL
    and one process start apart): the waiter takes both accounts at once, so neither lease may
    outlive its holder's fault."""
    faults = {uuid.uuid4(): signal.SIGKILL, uuid.uuid4(): signal.SIGSTOP}
    ttl = settings.lock_ttl_seconds
    holders = [
        subprocess.Popen(
            [sys.executable, "-c", _HOLDER, settings.redis_url, str(a), str(ttl)], cwd=ROOT, stdout=subprocess.PIPE
        )
        for a in faults
    ]
    try:
        for holder in holders:
            assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
        time.sleep(ttl)  # a live holder keeps the lease past its TTL
        assert [redis_client.exists(account_lock_key(a)) for a in faults] == [1, 1]
        for holder, fault in zip(holders, faults.values(), strict=True):
            os.kill(holder.pid, fault)
        with account_locks(redis_client, list(faults), ttl=ttl, wait=ttl + 2) as stats:
            pass
        assert not stats.degraded
        assert stats.wait_seconds <= ttl + 0.5
    finally:
        for holder in holders:
            holder.kill()  # SIGKILL ends a stopped process too
            holder.wait()
            assert holder.stdout is not None
            holder.stdout.close()
