"""Accepting a batch of transfers: one PIN check, one transaction, set-based writes.

Each item is judged exactly as if the items had been sent one by one as ``POST /transfers``,
in request order, after one PIN check: its own key (a key already bound with the same body is
a 200 replay, with another body a 422), its own checks, its own error. A key repeated inside
one request follows the same rule against the item that bound it first (a replay of that
transfer, or ``IDEMPOTENCY_KEY_REUSED``). Invalid items bind nothing.

An atomic batch is all-or-nothing at accept time too: any invalid item refuses the whole batch
(nothing bound), and it may not mix new transfers with ones accepted earlier (those could
never settle together with the new ones). Its transfers share one settlement partition, so
one drainer settles them in one transaction (core.transfers.linked).

The web layer calls ``prepare_batch``, checks the PIN when ``needs_pin``, then ``accept_batch``,
all in one transaction, and nudges ``partitions`` after the commit.
"""

from __future__ import annotations

import enum
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

from sqlalchemy import Row, Table, delete, insert, select, text, update
from sqlalchemy.orm import Session

from core import audit
from core.errors import Conflict, DomainError, IdempotencyKeyReused, LinkedFailed
from core.models import Account, Transfer, TransferBatch, TransferKind, TransferStatus, User
from core.transfers import idempotency
from core.transfers.idempotency import MoneyMovement, find_replay, fingerprint, validate_key
from core.transfers.requested import record_requested
from core.transfers.routing import partition_of
from core.transfers.submit import (
    ACCEPT_CLOCK_CTE,
    ACCEPTED_AT,
    DEFAULT_HOLD_SECONDS,
    HOLD_EXPIRES_AT,
    check_accounts,
    check_user,
)

MAX_ITEMS = 1000
HOLD_SECONDS = DEFAULT_HOLD_SECONDS  # items take the default expiry of POST /transfers

_T = Transfer.__table__
_B = cast(Table, TransferBatch.__table__)

# One statement for the whole batch, with array parameters: prepared once whatever the size.
# Rows go in key order, so two batches binding overlapping keys wait on each other's unique
# index entries in the same order (no deadlock); created_at keeps request order (a microsecond
# apart) because settlement decides in (created_at, id) order. The stamps are the database's
# clock, as on every accept path (submit.ACCEPTED_AT).
_INSERT_ITEMS = text(
    f"WITH {ACCEPT_CLOCK_CTE}"  # noqa: S608 -- formats in only SQL constants of submit.py and the table's column names
    " INSERT INTO transfers (id, kind, initiated_by, idempotency_key, request_hash, source_account_id,"
    " destination_account_id, amount, currency, reference, status, request_id, partition, hold,"
    " hold_expires_at, batch_id, created_at, updated_at, metadata)"
    " SELECT i.id, :kind, :initiated_by, i.key, i.hash, i.src, i.dst, i.amount, i.currency, i.reference,"
    " :status, :request_id, i.part, i.hold,"
    f" CASE WHEN i.hold THEN {HOLD_EXPIRES_AT} END,"
    f" :batch_id, {ACCEPTED_AT} + i.seq * interval '1 microsecond', {ACCEPTED_AT} + i.seq * interval '1 microsecond',"
    " CAST(i.metadata AS jsonb)"
    " FROM accept_clock, unnest(CAST(:ids AS uuid[]), CAST(:keys AS varchar[]), CAST(:hashes AS varchar[]),"
    " CAST(:srcs AS uuid[]), CAST(:dsts AS uuid[]), CAST(:amounts AS bigint[]), CAST(:currencies AS varchar[]),"
    " CAST(:references AS varchar[]), CAST(:parts AS smallint[]), CAST(:holds AS boolean[]),"
    " CAST(:seqs AS integer[]), CAST(:metadatas AS text[]))"
    " AS i(id, key, hash, src, dst, amount, currency, reference, part, hold, seq, metadata)"
    " ORDER BY i.key"
    f" {idempotency.ON_KEY_CONFLICT}"
    f" RETURNING {', '.join(f'transfers.{c.name}' for c in _T.c)}"
).columns(*_T.c)


@dataclass(frozen=True)
class BatchItem:
    """One item as the caller sent it (its shape already validated at the edge)."""

    idempotency_key: str | None
    movement: MoneyMovement
    hold: bool = False


@dataclass(frozen=True)
class _New:
    """An item that passed every check: a transfer to insert."""

    key: str
    movement: MoneyMovement
    hold: bool
    request_hash: str


class ItemOutcome(enum.StrEnum):
    ACCEPTED = "ACCEPTED"  # a new transfer, PENDING
    REPLAYED = "REPLAYED"  # the transfer its key bound before (in this request or an earlier one)
    REFUSED = "REFUSED"  # ``error`` says why


@dataclass
class ItemResult:
    """One item's outcome, in request order."""

    outcome: ItemOutcome
    transfer: Transfer | Row[Any] | None = None
    error: DomainError | None = None
    key: str | None = None  # of the new transfer this item accepts or replays
    replayed_earlier: bool = False  # a replay of a transfer bound before this request


@dataclass
class BatchPlan:
    items: Sequence[BatchItem | DomainError]  # an error: the item failed validation at the edge
    existing: dict[str, Transfer]  # the caller's transfers already bound to the items' keys

    @property
    def needs_pin(self) -> bool:
        """False when nothing can be accepted (every item a replay or invalid), as for POST /transfers."""
        keys = (_valid_key(i.idempotency_key) for i in self.items if isinstance(i, BatchItem))
        return any(k is not None and k not in self.existing for k in keys)


@dataclass
class BatchResult:
    items: list[ItemResult]
    batch_id: uuid.UUID | None = None  # None when nothing new was accepted
    refused: bool = False  # an atomic batch with an invalid item: nothing bound
    partitions: set[int] = field(default_factory=set)  # to nudge after the commit


def item_hash(movement: MoneyMovement, hold: bool) -> str:
    """The request hash of an item: POST /transfers' own for the same body (a hold with the
    default expiry included), so keys replay across both endpoints."""
    return fingerprint(TransferKind.TRANSFER, replace(movement, hold=hold))


def prepare_batch(session: Session, user: User, items: Sequence[BatchItem | DomainError]) -> BatchPlan:
    """Look up, in one query, the transfers already bound to the items' keys."""
    keys = {k for i in items if isinstance(i, BatchItem) and (k := _valid_key(i.idempotency_key))}
    existing = (
        {
            t.idempotency_key: t
            for t in session.scalars(
                select(Transfer).where(Transfer.initiated_by == user.id, Transfer.idempotency_key.in_(keys))
            )
        }
        if keys
        else {}
    )
    return BatchPlan(items, existing)


def accept_batch(
    session: Session,
    plan: BatchPlan,
    *,
    user: User,
    atomic: bool,
    partitions: int = 1,
    request_id: str | None = None,
) -> BatchResult:
    """Judge every item in request order and write the accepted ones PENDING, in the caller's transaction.

    The caller has checked the PIN (if ``plan.needs_pin``) and commits; a ``DomainError`` raised
    here (the caller's KYC or status) refuses the whole request.
    """
    if plan.needs_pin:
        check_user(user)
    accounts = _accounts(session, plan.items)
    results, new = _judge(user, plan, accounts)
    if atomic and _refuse_atomic(results, new):
        return BatchResult(results, refused=True)
    if not new:
        return BatchResult(results)
    batch_id = uuid.uuid4()
    session.execute(insert(_B), {"id": batch_id, "user_id": user.id, "atomic": atomic, "item_count": len(new)})
    # One partition for an atomic batch: one drainer settles all of it in one transaction.
    partition = partition_of(new[0].movement.source_account_id, partitions) if atomic else None  # type: ignore[arg-type]
    rows = _insert(session, user, new, batch_id, partition, partitions, request_id)
    if len(rows) < len(new):  # a concurrent request bound some of the keys first
        _resolve_lost(session, user, new, rows, results, atomic, batch_id)
    for r in results:
        if r.key is not None and r.transfer is None:
            r.transfer = rows[r.key]
    created = list(rows.values())
    _record(session, user, created, batch_id, atomic, request_id)
    return BatchResult(results, batch_id, partitions={t.partition for t in created})


def _judge(user: User, plan: BatchPlan, accounts: dict[uuid.UUID, Account]) -> tuple[list[ItemResult], list[_New]]:
    """Every item's result in request order, and the items to insert (one per new key)."""
    results: list[ItemResult] = []
    new: list[_New] = []
    bound: dict[str, tuple[str, Transfer | None]] = {}  # key -> (hash, earlier transfer or None if new)
    for item in plan.items:
        try:
            if isinstance(item, DomainError):
                raise item
            key = validate_key(item.idempotency_key)
            request_hash = item_hash(item.movement, item.hold)
            if key not in bound and key in plan.existing:
                earlier = plan.existing[key]
                bound[key] = (earlier.request_hash, earlier)
            if key in bound:
                bound_hash, earlier_transfer = bound[key]
                if bound_hash != request_hash:
                    raise IdempotencyKeyReused("this Idempotency-Key was used with a different request")
                if earlier_transfer is not None:
                    results.append(ItemResult(ItemOutcome.REPLAYED, earlier_transfer, replayed_earlier=True))
                else:
                    results.append(ItemResult(ItemOutcome.REPLAYED, key=key))
                continue
            check_accounts(user, item.movement, accounts)
        except DomainError as error:
            results.append(ItemResult(ItemOutcome.REFUSED, error=error))
            continue
        bound[key] = (request_hash, None)
        new.append(_New(key, item.movement, item.hold, request_hash))
        results.append(ItemResult(ItemOutcome.ACCEPTED, key=key))
    return results, new


def _refuse_atomic(results: list[ItemResult], new: list[_New]) -> bool:
    """An atomic batch is refused whole if any item is invalid, or if it mixes new transfers with
    ones bound before (those cannot be linked any more). Marks the items that would have passed."""
    if new:
        for r in results:
            if r.replayed_earlier:
                r.outcome, r.transfer, r.replayed_earlier = ItemOutcome.REFUSED, None, False
                r.error = Conflict("this key was bound before; an atomic batch links only new transfers")
    if not any(r.error for r in results):
        return False
    for r in results:
        if r.error is None:
            r.outcome, r.transfer, r.key = ItemOutcome.REFUSED, None, None
            r.error = LinkedFailed("not accepted: another item of this atomic batch is invalid")
    return True


def _accounts(session: Session, items: Sequence[BatchItem | DomainError]) -> dict[uuid.UUID, Account]:
    ids = {
        account_id
        for i in items
        if isinstance(i, BatchItem)
        for account_id in (i.movement.source_account_id, i.movement.destination_account_id)
        if account_id is not None
    }
    return {a.id: a for a in session.scalars(select(Account).where(Account.id.in_(ids)))} if ids else {}


def _insert(
    session: Session,
    user: User,
    new: list[_New],
    batch_id: uuid.UUID,
    partition: int | None,
    partitions: int,
    request_id: str | None,
) -> dict[str, Row[Any]]:
    """The new transfers, PENDING; returns the inserted rows by key (a key bound concurrently is missing)."""
    sources = [cast(uuid.UUID, i.movement.source_account_id) for i in new]
    rows = session.execute(
        _INSERT_ITEMS,
        {
            "kind": TransferKind.TRANSFER.value,
            "initiated_by": user.id,
            "status": TransferStatus.PENDING.value,
            "request_id": request_id,
            "hold_seconds": HOLD_SECONDS,
            "batch_id": batch_id,
            "ids": [uuid.uuid4() for _ in new],
            "keys": [i.key for i in new],
            "hashes": [i.request_hash for i in new],
            "srcs": sources,
            "dsts": [i.movement.destination_account_id for i in new],
            "amounts": [i.movement.amount for i in new],
            "currencies": [i.movement.currency for i in new],
            "references": [i.movement.reference for i in new],
            "parts": [partition if partition is not None else partition_of(s, partitions) for s in sources],
            "holds": [i.hold for i in new],
            "seqs": list(range(len(new))),
            # As JSON text (NULL: none): one array parameter, whatever each item's keys.
            "metadatas": [json.dumps(i.movement.metadata) if i.movement.metadata else None for i in new],
        },
    ).all()
    by_key: dict[str, Row[Any]] = {r.idempotency_key: r for r in rows}
    keys = [i.key for i in new]
    return {k: by_key[k] for k in keys if k in by_key}  # in request order


def _resolve_lost(
    session: Session,
    user: User,
    new: list[_New],
    rows: dict[str, Row[Any]],
    results: list[ItemResult],
    atomic: bool,
    batch_id: uuid.UUID,
) -> None:
    """Keys a concurrent request bound between our look-up and our insert: as POST /transfers does,
    a replay of that transfer (same body) or IDEMPOTENCY_KEY_REUSED. An atomic batch is a replay
    only if every key was bound so (the same batch sent twice at once); otherwise it could no
    longer be linked whole, and is refused (the transaction rolls back)."""
    refused = Conflict("a concurrent request bound a key of this atomic batch; nothing was accepted")
    if atomic and rows:
        raise refused
    lost = {i.key: i for i in new if i.key not in rows}
    for r in results:
        if r.key in lost:
            item = lost[r.key]
            try:
                replay, _ = idempotency.inserted_or_replay(
                    None, find_replay, session, user.id, item.key, item.request_hash
                )
                r.outcome, r.transfer, r.key = ItemOutcome.REPLAYED, replay, None
            except DomainError as error:
                if atomic:
                    raise refused from error
                r.outcome, r.error, r.key = ItemOutcome.REFUSED, error, None
    if rows:
        session.execute(update(_B).where(_B.c.id == batch_id).values(item_count=len(rows)))
    else:
        session.execute(delete(_B).where(_B.c.id == batch_id))


def _record(
    session: Session,
    user: User,
    created: list[Row[Any]],
    batch_id: uuid.UUID,
    atomic: bool,
    request_id: str | None,
) -> None:
    """The batch's audit row, then each transfer's (requested.record_requested: with its
    transfer.pending event), committed with the transfers."""
    if not created:
        return
    audit.record(
        session,
        action="transfer_batch.accepted",
        entity_type="transfer_batch",
        entity_id=batch_id,
        actor_id=user.id,
        request_id=request_id,
        details={"atomic": atomic, "item_count": len(created)},
    )
    record_requested(session, [t.id for t in created])


def _valid_key(key: str | None) -> str | None:
    try:
        return validate_key(key)
    except DomainError:
        return None
