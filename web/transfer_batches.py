"""/transfers/batch: up to 1,000 transfers in one request and one accept transaction."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask_jwt_extended import jwt_required
from flask_smorest import Blueprint

from core.after_commit import publish_after_commit
from core.db import database_now
from core.errors import DomainError, ValidationFailed
from core.identity.pin_checks import PinCheck, check_pin
from core.observability import metrics, tracing
from core.transfers.batch import BatchItem, ItemOutcome, ItemResult, accept_batch, prepare_batch
from core.transfers.idempotency import MoneyMovement
from core.transfers.submit import check_user
from web.context import request_id, resources, settings, transaction
from web.docs import BEARER
from web.me import pin_policy
from web.problems import domain_problem_body, domain_status
from web.schemas import BatchIn, BatchItemIn, BatchOut
from web.security import current_user
from worker.settlement import nudge_after_accept

blp = Blueprint("transfer_batches", __name__, url_prefix="/transfers", description="Transfer batches")

_ITEM = BatchItemIn()


@blp.route("/batch", methods=["POST"])
@jwt_required()
@blp.arguments(BatchIn)
@blp.response(200, BatchOut)
@blp.doc(**BEARER)
def create_batch(body: dict[str, Any]) -> dict[str, Any]:
    """Each item follows POST /transfers (its own key, replay, checks) after one PIN check.

    `200` with one result per item in order: `202` accepted, `200` replay, or the item's error
    (a problem object). `atomic: true`: an invalid item refuses the whole batch (`422`, nothing
    accepted, the items' errors in `items`); accepted atomic items settle all together or all
    end `FAILED` (`LINKED_FAILED` on all but the first failing one).
    """
    user = current_user()
    items = [_item(raw) for raw in body["items"]]
    # One transaction: the replay look-up, the PIN (a wrong one commits its failure count), the
    # checks and the inserts.
    result = None
    pin = PinCheck.OK
    with tracing.span("accept_transfer_batch", transfer_count=len(items)), transaction() as session:
        plan = prepare_batch(session, user, items)
        if plan.needs_pin:
            check_user(user)  # KYC before the PIN, as for POST /transfers
            pin = check_pin(
                session,
                user_id=user.id,
                pin=body["pin"],
                policy=pin_policy(),
                now=database_now(session),
                request_id=request_id(),
                known_user=user,
            )
        if pin is PinCheck.OK:
            result = accept_batch(
                session,
                plan,
                user=user,
                atomic=body["atomic"],
                partitions=settings().settle_partitions,
                request_id=request_id(),
            )
            for partition in sorted(result.partitions):
                publish_after_commit(session, nudge_after_accept, resources().redis, partition)
    pin.raise_if_failed()
    assert result is not None
    if result.refused:
        raise ValidationFailed(
            "atomic batch refused: an item is invalid, nothing was accepted",
            items=[_out(r) for r in result.items],
        )
    accepted = sum(1 for r in result.items if r.outcome == ItemOutcome.ACCEPTED)
    if accepted:
        metrics.TRANSFERS_ACCEPTED.labels(kind="TRANSFER").inc(accepted)
    return {"items": [_out(r) for r in result.items]}


def _item(raw: dict[str, Any]) -> BatchItem | DomainError:
    """An item's shape is its own error (422), as a POST /transfers body's would be."""
    try:
        data = _ITEM.load(raw)
    except ma.ValidationError as error:
        return ValidationFailed("item validation failed", errors=error.messages)
    movement = MoneyMovement(
        source_account_id=data["source_account_id"],
        destination_account_id=data["destination_account_id"],
        amount=data["amount"],
        currency=data["currency"],
        reference=data.get("reference"),
        metadata=data.get("metadata"),
    )
    return BatchItem(data.get("idempotency_key"), movement, data["hold"])


# As POST /transfers answers the same item alone; a refused item takes its error's status.
_ITEM_STATUSES = {ItemOutcome.ACCEPTED: 202, ItemOutcome.REPLAYED: 200}


def _out(result: ItemResult) -> dict[str, Any]:
    status = domain_status(result.error) if result.error is not None else _ITEM_STATUSES[result.outcome]
    out: dict[str, Any] = {"status": status}
    if result.transfer is not None:
        out["transfer"] = result.transfer
    if result.error is not None:
        out["error"] = domain_problem_body(result.error)
    return out
