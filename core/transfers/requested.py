"""What every accepted transfer writes besides its row: the ``transfer.requested`` audit row and
the ``transfer.pending`` outbox event, committed with it.

One definition for every accept path: the one-statement accept (core/transfers/accept.py) puts
``requested_ctes`` into its statement, over the row it inserts; the careful path (submit.py)
and batches (batch.py) run ``record_requested``, the same CTEs over the rows they inserted. Both
are built from the rows themselves (the actor is the transfer's ``initiated_by``, the owners
the accounts' users, the payload ``events.transfer_data_sql``), so the paths cannot disagree.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.orm import Session

from core.events import EventType, owners_sql, transfer_data_sql

ACTION = "transfer.requested"


def requested_ctes(rows: str) -> str:
    """Two data-modifying CTEs (``requested_audit``, ``requested_events``) over ``rows``, a
    relation of just-inserted ``transfers`` rows; in accept order, so audit ids and event
    sequence numbers follow it (a batch's items are a microsecond apart). The audit details are
    the amount and currency, and the batch for a batch's item."""
    return f"""requested_audit AS (
    INSERT INTO audit_log (actor_id, action, entity_type, entity_id, request_id, details)
    SELECT r.initiated_by, '{ACTION}', 'transfer', CAST(r.id AS text), r.request_id,
           jsonb_strip_nulls(jsonb_build_object('amount', r.amount, 'currency', r.currency, 'batch_id', r.batch_id))
    FROM {rows} r ORDER BY r.created_at, r.id
), requested_events AS (
    INSERT INTO webhook_events (id, event_type, data, owner_ids)
    SELECT gen_random_uuid(), '{EventType.TRANSFER_PENDING}', {transfer_data_sql("r")}, owners.ids
    FROM {rows} r
    JOIN accounts s ON s.id = r.source_account_id
    JOIN accounts d ON d.id = r.destination_account_id
    CROSS JOIN LATERAL (SELECT {owners_sql("s.user_id", "d.user_id")} AS ids) owners
    WHERE cardinality(owners.ids) > 0
    ORDER BY r.created_at, r.id
)"""  # noqa: S608 -- formats in only a relation name of core, enum constants and SQL fragments of core.events


_RECORD = text(
    "WITH requested_rows AS (SELECT * FROM transfers WHERE id = ANY(CAST(:ids AS uuid[]))),"  # noqa: S608 -- see requested_ctes
    f" {requested_ctes('requested_rows')}"
    " SELECT 1"
)


def record_requested(session: Session, transfer_ids: Sequence[uuid.UUID]) -> None:
    """The audit rows and events of transfers just inserted PENDING, in the caller's transaction."""
    if transfer_ids:
        session.execute(_RECORD, {"ids": list(transfer_ids)})
