"""Transaction PINs: HMAC-SHA256 keyed with a server-side pepper.

A 4-6 digit PIN has at most 10^6 values, so no slow hash protects it from an offline
attacker holding the database; the pepper (kept out of the database) and the online
lockout do. HMAC keeps verification cheap on the transfer hot path.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid

from core.errors import ValidationFailed

PIN_PATTERN = re.compile(r"^[0-9]{4,6}\Z")
_VERSION = "v1"  # lets a future pepper rotation tell old hashes from new ones


def validate_pin(pin: str, field: str = "pin") -> str:
    if not PIN_PATTERN.match(pin):
        raise ValidationFailed("PIN must be 4 to 6 digits", errors={field: ["Must be 4 to 6 digits."]})
    return pin


def hash_pin(pepper: bytes, user_id: uuid.UUID, pin: str) -> str:
    mac = hmac.new(pepper, f"{user_id}:{pin}".encode(), hashlib.sha256).hexdigest()
    return f"{_VERSION}${mac}"


def verify_pin(pepper: bytes, user_id: uuid.UUID, pin: str, stored: str) -> bool:
    return hmac.compare_digest(hash_pin(pepper, user_id, pin), stored)
