"""Linked transfers: the items of an atomic batch settle all together or all fail.

An atomic batch is accepted in one transaction and routed to one partition, and every query
that picks transfers to settle takes an atomic batch whole (``with_siblings``): so its PENDING
transfers are always settled by one ``settle_batch`` call, in one Postgres transaction, and a
redelivered or duplicated call finds them all final. Inside the call the group is decided at
the place of its first transfer in accept order, each transfer against the running balances;
the first to fail makes the whole group fail (its own failure code on it, ``LINKED_FAILED`` on
the others) and everything the group had changed in the plan is undone.
"""

from __future__ import annotations

import copy
import dataclasses
import uuid
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from core.models import Transfer, TransferBatch

LINKED_FAILED = "LINKED_FAILED"

_T = Transfer.__table__
_B = TransferBatch.__table__


def atomic_batches(session: Session, transfer_ids: Collection[uuid.UUID]) -> set[uuid.UUID]:
    """The atomic batches any of ``transfer_ids`` belongs to (a read by primary keys, no locks)."""
    if not transfer_ids:
        return set()
    return set(
        session.scalars(
            select(_B.c.id)
            .join(_T, _T.c.batch_id == _B.c.id)
            .where(_T.c.id.in_(list(transfer_ids)), _B.c.atomic)
            .distinct()
        )
    )


def with_siblings(transfer_ids: Collection[uuid.UUID], batches: Collection[uuid.UUID]) -> ColumnElement[bool]:
    """Rows of ``transfer_ids`` or of any of the atomic ``batches``: one statement locks them all,
    in its own order, so two overlapping calls cannot deadlock on a group."""
    ids = _T.c.id.in_(list(transfer_ids))
    return or_(ids, _T.c.batch_id.in_(list(batches))) if batches else ids


def units(pending: Sequence[Any], batches: Collection[uuid.UUID]) -> list[list[Any]]:
    """Accept order, an atomic batch's transfers gathered (in their own order) at its first one's place."""
    out: list[list[Any]] = []
    groups: dict[uuid.UUID, list[Any]] = {}
    for t in pending:
        if t.batch_id in batches:
            if t.batch_id not in groups:
                groups[t.batch_id] = []
                out.append(groups[t.batch_id])
            groups[t.batch_id].append(t)
        else:
            out.append([t])
    return out


def apply_all_or_none(plan: Any, group: Iterable[Any], apply: Callable[[Any], str | None]) -> None:
    """Apply ``group`` in order with ``apply`` (which records one transfer in ``plan``, outcome
    included, and returns its failure code); if one fails, put ``plan`` back as it was before the
    group and record the group failed: that code on the failing transfer, LINKED_FAILED on the rest."""
    group = list(group)
    saved = _snapshot(plan)
    for t in group:
        code = apply(t)
        if code is not None:
            _restore(plan, saved)
            for u in group:
                plan.outcomes[u.id] = code if u is t else LINKED_FAILED
            return


def _snapshot(plan: Any) -> dict[str, Any]:
    """A copy of every field of the plan (dataclass of dicts, lists and sets of immutable values)."""
    return {f.name: copy.copy(getattr(plan, f.name)) for f in dataclasses.fields(plan)}


def _restore(plan: Any, saved: dict[str, Any]) -> None:
    for name, value in saved.items():
        setattr(plan, name, value)
