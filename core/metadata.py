"""Metadata: a client's own string keys and values on transfers and accounts (API.md "Metadata").

One home for its limits: the API's schemas and the services check with ``validate_metadata``.
Stored as a JSON object in a ``jsonb`` column (NULL: none), returned as ``{}`` when there is none,
and searched with ``@>`` through a GIN index (``GET /transfers?metadata[KEY]=VALUE``).
"""

from __future__ import annotations

import uuid
from typing import Any, cast

from sqlalchemy.orm import Session

from core import audit
from core.accounts.service import get_owned
from core.errors import ValidationFailed
from core.models import Account, User

MAX_KEYS = 20
MAX_KEY_LENGTH = 40
MAX_VALUE_LENGTH = 500


def problems(value: Any) -> dict[str, list[str]] | list[str]:
    """What is wrong with ``value`` as metadata: per key, or for the whole object; empty when fine."""
    if not isinstance(value, dict):
        return ["Must be an object of string keys and string values."]
    if len(value) > MAX_KEYS:
        return [f"At most {MAX_KEYS} keys."]
    wrong: dict[str, list[str]] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY_LENGTH or "\x00" in key:
            wrong[str(key)] = [f"Keys are 1-{MAX_KEY_LENGTH} characters."]
        elif not isinstance(item, str) or len(item) > MAX_VALUE_LENGTH or "\x00" in item:
            wrong[key] = [f"Must be a string of at most {MAX_VALUE_LENGTH} characters."]
    return wrong


def validate_metadata(value: Any) -> dict[str, str] | None:
    """``value`` checked; None (no metadata) for None or an empty object. ValidationFailed (422)
    names the offending key, or ``metadata`` itself when the object as a whole is wrong."""
    if value is None:
        return None
    wrong = problems(value)
    if wrong:
        raise ValidationFailed("invalid metadata", errors={"metadata": wrong})
    return dict(value) or None


def shown(stored: dict[str, str] | None) -> dict[str, str]:
    """As the API returns it: ``{}`` when there is none."""
    return dict(stored) if stored else {}


def stored_metadata(resource: Any) -> dict[str, str] | None:
    """The metadata of an ORM object (its ``metadata_``: ``metadata`` is SQLAlchemy's on a mapped
    class) or of a row with the table's columns (``metadata``); None when it has none."""
    if hasattr(resource, "metadata_"):
        return cast(dict[str, str] | None, resource.metadata_)
    mapping = getattr(resource, "_mapping", None)
    return cast(dict[str, str] | None, mapping.get("metadata")) if mapping is not None else None


def set_account_metadata(
    session: Session, account_id: uuid.UUID, value: dict[str, str] | None, *, user: User, request_id: str | None
) -> Account:
    """Replace the metadata of the owner's account (None or ``{}``: remove it). Audited."""
    account = get_owned(session, account_id, user)
    before = account.metadata_
    account.metadata_ = validate_metadata(value)
    audit.record(
        session,
        action="account.metadata_set",
        entity_type="account",
        entity_id=account.id,
        actor_id=user.id,
        request_id=request_id,
        details={"before": shown(before), "after": shown(account.metadata_)},
    )
    return account
