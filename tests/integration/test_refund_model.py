"""Property: random transfers, refunds and settlements in any order agree with a small model."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from core.errors import Conflict, RefundExceedsAmount
from core.models import Transfer, TransferStatus
from core.reconcile import reconcile
from core.transfers.idempotency import MoneyMovement
from core.transfers.refund import refund_transfer
from core.transfers.submit import submit_transfer
from tests.factories import balance, fund
from tests.profiles import examples
from tests.settling import settle_transfer

N = 3
step = st.one_of(
    st.tuples(st.just("transfer"), st.integers(0, N - 1), st.integers(0, N - 1), st.integers(1, 400)),
    # refund the k-th transfer (mod how many there are) by its payee; 0 = the default amount
    st.tuples(st.just("refund"), st.integers(0, 20), st.booleans(), st.integers(0, 300)),
    st.tuples(st.just("settle"), st.integers(0, 20), st.just(0), st.just(0)),
)


@dataclass
class Move:
    id: uuid.UUID
    src: int
    dst: int
    amount: int
    refund_of: Move | None = None
    status: TransferStatus = TransferStatus.PENDING
    refunds: list[Move] = field(default_factory=list)

    def refundable(self) -> int:
        return self.amount - sum(r.amount for r in self.refunds if r.status != TransferStatus.FAILED)


@settings(max_examples=examples(25), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(step, min_size=1, max_size=16), opening=st.lists(st.integers(0, 600), min_size=N, max_size=N))
def test_random_refund_sequences_match_the_model(sessions, make_customer, admin_user, steps, opening) -> None:  # type: ignore[no-untyped-def]
    people = [make_customer() for _ in range(N)]
    model = list(opening)
    for p, amount in zip(people, opening, strict=True):
        if amount:
            fund(sessions, admin_user, p.account, amount)
    moves: list[Move] = []

    for kind, a, b, amount in steps:
        if kind == "transfer":
            if a == b:
                continue
            with sessions.begin() as s:
                t = submit_transfer(
                    s,
                    user=people[a].user,
                    idempotency_key=str(uuid.uuid4()),
                    movement=MoneyMovement(people[a].account.id, people[b].account.id, amount, "USD", None),
                ).transfer
            moves.append(Move(t.id, a, b, amount))
        elif kind == "refund":
            originals = [m for m in moves if m.refund_of is None]
            if not originals:
                continue
            original = originals[a % len(originals)]
            payee = people[original.dst]
            wanted = amount or None
            expect = _expected_refund(original, wanted)
            try:
                with sessions.begin() as s:
                    r = refund_transfer(
                        s,
                        user=admin_user if b else payee.user,
                        transfer_id=original.id,
                        idempotency_key=str(uuid.uuid4()),
                        amount=wanted,
                        reason=None,
                    ).transfer
                got: str | int = r.amount
                refund = Move(r.id, original.dst, original.src, r.amount, refund_of=original)
                original.refunds.append(refund)
                moves.append(refund)
            except Conflict:
                got = "CONFLICT"
            except RefundExceedsAmount:
                got = "EXCEEDS"
            assert got == expect, (original, wanted)
        else:
            pending = [m for m in moves if m.status == TransferStatus.PENDING]
            if not pending:
                continue
            move = pending[a % len(pending)]
            with sessions.begin() as s:
                settled = settle_transfer(s, move.id)
            ok = model[move.src] >= move.amount
            move.status = TransferStatus.COMPLETED if ok else TransferStatus.FAILED
            if ok:
                model[move.src] -= move.amount
                model[move.dst] += move.amount
            assert settled.status == move.status

        assert [balance(sessions, p.account.id) for p in people] == model

    with sessions() as s:
        for m in moves:
            if m.refund_of is None:
                refunded = s.scalars(select(Transfer).where(Transfer.refund_of == m.id))
                assert sum(r.amount for r in refunded if r.status != TransferStatus.FAILED) <= m.amount
        report = reconcile(s)
    assert report.ok, report.problems


def _expected_refund(original: Move, wanted: int | None) -> str | int:
    if original.status != TransferStatus.COMPLETED:
        return "CONFLICT"
    remaining = original.refundable()
    amount = remaining if wanted is None else wanted
    if remaining <= 0 or amount > remaining:
        return "EXCEEDS"
    return amount
