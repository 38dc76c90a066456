"""Append-only audit trail of money-moving and security actions."""

from __future__ import annotations

import uuid
from typing import Any, cast

from psycopg.types.json import Jsonb
from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from core.db import copy_rows
from core.models import AuditLog
from core.pagination import Page, paginate


def record(
    session: Session,
    *,
    action: str,
    entity_type: str,
    entity_id: uuid.UUID | str | None,
    actor_id: uuid.UUID | None,
    request_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Add an audit row to the caller's transaction: it commits with the change it describes.

    Never pass secrets in ``details``: the row is kept forever and cannot be edited.
    """
    record_many(
        session,
        [
            entry(
                action=action,
                entity_type=entity_type,
                entity_id=entity_id,
                actor_id=actor_id,
                request_id=request_id,
                details=details,
            )
        ],
    )


def search(
    session: Session,
    *,
    entity_id: str | None,
    action: str | None,
    cursor: str | None,
    limit: int,
) -> Page[AuditLog]:
    """Audit rows newest first (ids only grow)."""
    stmt = select(AuditLog)
    if entity_id:
        stmt = stmt.where(AuditLog.entity_id == entity_id)
    if action:
        stmt = stmt.where(AuditLog.action == action)
    return paginate(session, stmt, (AuditLog.id,), cursor, limit)


_COLUMNS = ("actor_id", "action", "entity_type", "entity_id", "request_id", "details")


def entry(
    *,
    action: str,
    entity_type: str,
    entity_id: uuid.UUID | str | None,
    actor_id: uuid.UUID | None,
    request_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One audit row for ``record_many`` (same rules as ``record``)."""
    return {
        "actor_id": actor_id,
        "action": action,
        "entity_type": entity_type,
        "entity_id": str(entity_id) if entity_id is not None else None,
        "request_id": request_id,
        "details": details or {},
    }


def record_many(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert many audit rows with one statement, in the caller's transaction (hot paths)."""
    if len(rows) == 1:  # an accept, a login...: one cached Core statement
        session.execute(insert(cast(Table, AuditLog.__table__)), rows)
    elif rows:  # a settlement batch: COPY, no statement to compile, no per-row round trip
        copy_rows(session, "audit_log", _COLUMNS, ([r[c] for c in _COLUMNS[:-1]] + [Jsonb(r["details"])] for r in rows))
