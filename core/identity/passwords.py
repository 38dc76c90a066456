"""Passwords are hashed with argon2id (argon2-cffi defaults follow RFC 9106).

``APP_ENV=test`` alone gets cheap parameters (1 MiB, one pass: about a millisecond instead of
tens), so the suite's hundreds of registrations and logins do not dominate its run time. The
choice follows APP_ENV, so a production process can never hash with them; every hash records
its own parameters, so hashes made under either setting verify under the other.
"""

from __future__ import annotations

import os

import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from core.observability import metrics

log = structlog.get_logger(__name__)

PRODUCTION_MIN_MEMORY_KIB = 65536


def hasher_for(app_env: str) -> PasswordHasher:
    if app_env == "test":
        return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    return PasswordHasher()


_hasher = hasher_for(os.environ.get("APP_ENV", "development").strip().lower())
# Verified against when the email is unknown, so both answers cost the same time.
_DUMMY_HASH = _hasher.hash("not-a-real-password-only-for-timing")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True if ``password`` matches. A stored hash that cannot be read (corrupt, truncated, an
    unknown format) refuses the login like a wrong password, so the caller learns nothing, but
    it is our fault, not the user's: it is logged as an error (never the hash) and counted."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except VerifyMismatchError:
        return False
    except (VerificationError, InvalidHashError) as error:
        log.error("password_hash_unreadable", error_type=type(error).__name__)
        metrics.PASSWORD_HASH_UNREADABLE.inc()
        return False
