"""One-time codes for logins from untrusted devices, kept in Redis.

A challenge is one Redis hash with a TTL: the user, the device that asked, an HMAC of the
6-digit code (keyed with a server secret, so a Redis dump does not give the codes away),
and an attempt counter. The counter is bumped atomically before the code is compared, so
parallel guesses cannot exceed the limit; the challenge ends on success, on the last
allowed wrong code, or when the TTL expires.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from redis import Redis

CODE_DIGITS = 6
CODE_PATTERN = re.compile(r"^[0-9]{6}\Z")
_KEY = "otp:challenge:{}"

# Returns nil for an unknown/expired/ended challenge, else {attempts, user_id, code_mac, device_id, purpose}.
# Bumping the counter and reading the fields happen in one step; a spent challenge is deleted.
_TAKE_ATTEMPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local n = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if n > tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  return false
end
local f = redis.call('HMGET', KEYS[1], 'user_id', 'code_mac', 'device_id', 'purpose')
return {n, f[1], f[2], f[3] or '', f[4] or ''}
"""


@dataclass(frozen=True)
class OtpPolicy:
    key: bytes  # HMAC key of the stored codes (a server secret, never in Redis)
    ttl_seconds: int
    max_attempts: int


@dataclass(frozen=True)
class Challenge:
    id: str
    user_id: uuid.UUID
    device_id: str | None
    purpose: str


class OtpVerdict(enum.Enum):
    OK = "ok"
    WRONG = "wrong"  # wrong code, the challenge goes on
    ENDED = "ended"  # unknown, expired, or its last attempt was just used


def _mac(policy: OtpPolicy, challenge_id: str, code: str) -> str:
    return hmac.new(policy.key, f"otp:v1:{challenge_id}:{code}".encode(), hashlib.sha256).hexdigest()


def new_challenge_id() -> str:
    return secrets.token_urlsafe(24)


def issue(
    redis: Redis,
    policy: OtpPolicy,
    *,
    challenge_id: str,
    user_id: uuid.UUID,
    device_id: str | None,
    purpose: str = "login",
) -> tuple[Challenge, str]:
    """Store a new challenge and return it with its code (the only place the plain code exists)."""
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    key = _KEY.format(challenge_id)
    with redis.pipeline(transaction=True) as pipe:
        pipe.hset(
            key,
            mapping={
                "user_id": str(user_id),
                "code_mac": _mac(policy, challenge_id, code),
                "device_id": device_id or "",
                "purpose": purpose,
                "attempts": 0,
            },
        )
        pipe.expire(key, policy.ttl_seconds)
        pipe.execute()
    return Challenge(challenge_id, user_id, device_id, purpose), code


def peek(redis: Redis, challenge_id: str) -> Challenge | None:
    """The challenge, if it is still open, without spending an attempt (to find whose lockout applies)."""
    fields: Any = redis.hmget(_KEY.format(challenge_id), ["user_id", "device_id", "purpose"])
    user_id, device_id, purpose = (v.decode() if isinstance(v, bytes) else v for v in fields)
    if not user_id:
        return None
    return Challenge(challenge_id, uuid.UUID(user_id), device_id or None, purpose or "login")


def verify(redis: Redis, policy: OtpPolicy, *, challenge_id: str, code: str) -> tuple[OtpVerdict, Challenge | None]:
    """Check a code against a challenge; the challenge is returned whenever it was found."""
    key = _KEY.format(challenge_id)
    taken: Any = redis.eval(_TAKE_ATTEMPT, 1, key, policy.max_attempts)
    if not taken:
        return OtpVerdict.ENDED, None
    attempts, user_id, code_mac, device_id, purpose = (v.decode() if isinstance(v, bytes) else v for v in taken)
    challenge = Challenge(challenge_id, uuid.UUID(user_id), device_id or None, purpose)
    expected = _mac(policy, challenge_id, code if CODE_PATTERN.match(code) else "")
    if hmac.compare_digest(expected, code_mac):
        # Single use: only the request that deletes the key wins a concurrent double submit.
        return (OtpVerdict.OK if redis.delete(key) == 1 else OtpVerdict.ENDED), challenge
    if int(attempts) >= policy.max_attempts:
        redis.delete(key)
        return OtpVerdict.ENDED, challenge
    return OtpVerdict.WRONG, challenge
