"""flask-limiter's moving window in one Redis round trip per limited request.

flask-limiter's ``moving-window`` strategy pays two Lua scripts per request in Redis: one to take
an entry (``acquire_entry``) and one more to read the window back for the ``X-RateLimit-*``
headers (``get_window_stats``). None of the library's strategies returns both at once (the fixed
and sliding-counter windows cost two or three commands as well), so this strategy runs one script
that takes the entry and returns the window it leaves, and answers the headers' question from that
answer for the rest of the request. Same keys, same list, same rule as ``moving-window``: a switch
between the two keeps every budget already spent.

Any storage other than Redis (the in-memory fallback when Redis is down, tests' ``memory://``)
goes through the library's moving window unchanged.
"""

from __future__ import annotations

import time

from flask import g, has_app_context
from limits import RateLimitItem
from limits.storage import RedisStorage
from limits.strategies import STRATEGIES, MovingWindowRateLimiter
from limits.util import WindowStats
from redis.commands.core import Script

NAME = "moving-window-one-trip"

# acquire_moving_window.lua and moving_window.lua from the limits package, in one script: the
# entry is taken as there (newest first, trimmed to the limit, the key expiring with the window),
# then the oldest entry still inside the window is found by the same binary search. Returns
# {taken, oldest entry's time (a string: Redis would truncate a Lua number), entries in window}.
_ACQUIRE_AND_READ = b"""
local timestamp = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local expiry = tonumber(ARGV[3])
local amount = tonumber(ARGV[4])
local taken = 0
if amount <= limit then
    local entry = redis.call('lindex', KEYS[1], limit - amount)
    if not (entry and tonumber(entry) >= timestamp - expiry) then
        local entries = {}
        for i = 1, amount do entries[i] = timestamp end
        for i = 1, #entries, 5000 do
            redis.call('lpush', KEYS[1], unpack(entries, i, math.min(i + 4999, #entries)))
        end
        redis.call('ltrim', KEYS[1], 0, limit - 1)
        redis.call('expire', KEYS[1], expiry)
        taken = 1
    end
end
local target = timestamp - expiry
local low, high, found = 0, limit - 1, nil
while low <= high do
    local mid = math.floor((low + high) / 2)
    local value = tonumber(redis.call('lindex', KEYS[1], mid))
    if value and value >= target then
        found = mid
        low = mid + 1
    else
        high = mid - 1
    end
end
if found then
    return {taken, redis.call('lindex', KEYS[1], found), found + 1}
end
return {taken, tostring(timestamp), 0}
"""


class OneTripMovingWindow(MovingWindowRateLimiter):
    """``moving-window`` whose ``hit`` also answers the ``get_window_stats`` that follows it."""

    _script: Script | None = None

    def hit(self, item: RateLimitItem, *identifiers: str, cost: int = 1) -> bool:
        if not isinstance(self.storage, RedisStorage):
            return super().hit(item, *identifiers, cost=cost)
        if self._script is None:
            self._script = self.storage.get_connection().register_script(_ACQUIRE_AND_READ)
        key = item.key_for(*identifiers)
        taken, oldest, count = self._script(
            [self.storage.prefixed_key(key)], [time.time(), item.amount, item.get_expiry(), cost]
        )
        if has_app_context():  # the headers of this request read it back (flask-limiter's RequestLimit.window)
            g.setdefault("limit_windows", {})[key] = WindowStats(float(oldest) + item.get_expiry(), item.amount - count)
        return bool(taken)

    def get_window_stats(self, item: RateLimitItem, *identifiers: str) -> WindowStats:
        windows = g.get("limit_windows") if has_app_context() else None
        stats = windows.pop(item.key_for(*identifiers), None) if windows else None
        return stats if stats is not None else super().get_window_stats(item, *identifiers)


# flask-limiter looks its ``strategy`` up in this table (for the storage and its in-memory fallback).
STRATEGIES.setdefault(NAME, OneTripMovingWindow)
