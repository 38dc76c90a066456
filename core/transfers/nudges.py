"""Coalescing settlement nudges: at most one waiting nudge per partition.

A nudge names only a partition and its drainer settles every PENDING transfer it finds, so one
waiting nudge covers all transfers committed before its drainer looks. The API publishes a
nudge only when it sets the partition's flag (SET NX), and a drainer clears the flag before it
looks: a transfer whose nudge was skipped was committed while the flag was set, so before the
clear, so before the look. The flag expires, so a nudge lost with its flag set delays its
transfers by the TTL at most (then the sweeper is the backstop); without Redis, every accept
publishes.
"""

from __future__ import annotations

import contextlib

from redis import Redis
from redis.exceptions import RedisError

FLAG_TTL_MS = 2000


def _flag(partition: int) -> str:
    return f"settle:nudge:{partition}"


def claim_nudge(redis: Redis, partition: int) -> bool:
    """True when the caller must publish the partition's nudge (no other one is waiting)."""
    try:
        return bool(redis.set(_flag(partition), "1", nx=True, px=FLAG_TTL_MS))
    except RedisError:
        return True


def release_nudge(redis: Redis, partition: int) -> None:
    """The drainer is about to look (or the publish failed): the next accept nudges again."""
    with contextlib.suppress(RedisError):  # else the flag expires on its own
        redis.delete(_flag(partition))
