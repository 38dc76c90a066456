"""Settling one transfer in a test's own session: what a drainer does to a batch of one.

Production settles only whole partition batches (worker/settlement.py); tests that set up a
state "after settlement" settle the one transfer they made, in their session."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from core.models import Transfer
from core.transfers.settle import Settled, settle_batch


def settle_transfer(session: Session, transfer_id: uuid.UUID) -> Settled:
    """Settle one transfer (a batch of one; an atomic batch's siblings settle with it). Safe to
    call any number of times: a final transfer is returned as it is (``applied`` False)."""
    settled = [s for s in settle_batch(session, [transfer_id]) if s.transfer_id == transfer_id]
    if settled:
        return settled[0]
    transfer = session.get(Transfer, transfer_id)
    if transfer is None:
        raise LookupError(f"transfer {transfer_id} does not exist")
    return Settled(
        transfer.id,
        transfer.status,
        transfer.failure_code,
        False,
        transfer.amount,
        transfer.currency,
        transfer.created_at,
        transfer.request_id,
    )
