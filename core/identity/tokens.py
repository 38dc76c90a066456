"""Token revocation state in Redis, shared by every API process.

Each login starts a token *family* (``fam`` claim) that its access and refresh tokens share;
a refresh rotates within the family. Keys expire with the tokens they describe, so the
denylist never grows without bound:

- ``auth:revoked:jti:<jti>``  one revoked token (logout), TTL = the token's remaining life;
- ``auth:revoked:fam:<fam>``  a revoked family (logout, refresh-token reuse), TTL = refresh lifetime;
- ``auth:refresh_used:<jti>`` a refresh token already exchanged; a second use is theft.

A password change does not use Redis: it bumps ``users.token_generation`` in Postgres.
"""

from __future__ import annotations

from redis import Redis

_JTI = "auth:revoked:jti:{}"
_FAMILY = "auth:revoked:fam:{}"
_USED = "auth:refresh_used:{}"


def is_revoked(redis: Redis, *, jti: str, family: str | None) -> bool:
    keys = [_JTI.format(jti)] + ([_FAMILY.format(family)] if family else [])
    return bool(redis.exists(*keys))


def revoke_token(redis: Redis, *, jti: str, ttl_seconds: int) -> None:
    redis.set(_JTI.format(jti), 1, ex=max(1, ttl_seconds))


def revoke_family(redis: Redis, *, family: str, ttl_seconds: int) -> None:
    redis.set(_FAMILY.format(family), 1, ex=max(1, ttl_seconds))


def claim_refresh(redis: Redis, *, jti: str, ttl_seconds: int) -> bool:
    """Mark a refresh token as exchanged. False if it already was: the caller must revoke its family."""
    return bool(redis.set(_USED.format(jti), 1, nx=True, ex=max(1, ttl_seconds)))
