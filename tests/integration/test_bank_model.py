"""A model of the whole bank (issue 20, item 6): one hypothesis state machine mixes every
operation (transfers, holds, captures in full or in part, voids, expiries, refunds, atomic and
plain batches, deposits, freezes, limit and credit-line changes) on real Postgres against a small
in-memory model, and after every step checks: balances and available balances equal the model's,
each balance monitor fired once per crossing,
no balance below -credit_limit unless the line was lowered below it, use within the model's and
the limits, the sum of all balances 0, and reconcile clean."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test
from sqlalchemy import func, select, update

from core.accounts import limit_settings, monitors, usage
from core.accounts.service import set_frozen
from core.errors import AccountInactive, DomainError, LimitExceeded, NotFound
from core.events import DomainEvent, EventType
from core.models import Account, Transfer, TransferStatus
from core.reconcile import reconcile
from core.transfers import holds
from core.transfers.batch import BatchItem, accept_batch, prepare_batch
from core.transfers.idempotency import MoneyMovement
from core.transfers.refund import refund_transfer
from core.transfers.settle import settle_batch
from core.transfers.submit import submit_transfer
from tests.factories import fund
from tests.profiles import examples

N = 3
LOW = 100  # every account has a monitor "available_balance lt LOW"
AMOUNTS = st.integers(1, 700)


@dataclass
class Sent:
    source: int
    destination: int
    amount: int
    hold: bool
    refund: bool = False
    status: TransferStatus = TransferStatus.PENDING
    moved: int = 0  # what it moved (its captured amount for a captured hold)
    refunded: int = 0  # refunds of it not FAILED


@dataclass
class Model:
    balance: list[int] = field(default_factory=lambda: [0] * N)
    held: list[int] = field(default_factory=lambda: [0] * N)
    credit: list[int] = field(default_factory=lambda: [0] * N)
    daily: list[int | None] = field(default_factory=lambda: [None] * N)
    per_transfer: list[int | None] = field(default_factory=lambda: [None] * N)
    used: list[int] = field(default_factory=lambda: [0] * N)
    frozen: list[bool] = field(default_factory=lambda: [False] * N)
    over: list[bool] = field(default_factory=lambda: [False] * N)
    alerts: list[int] = field(default_factory=lambda: [0] * N)  # crossings of "available_balance lt LOW"

    def available(self, i: int) -> int:
        return self.balance[i] - self.held[i] + self.credit[i]

    def refusal(self, i: int, j: int, amount: int) -> type[DomainError] | None:
        """What accept says (check order: source status, destination, per_transfer)."""
        if self.frozen[i]:
            return AccountInactive
        if self.frozen[j]:
            return NotFound
        if self.per_transfer[i] is not None and amount > self.per_transfer[i]:  # type: ignore[operator]
            return LimitExceeded
        return None

    def decide(self, i: int, j: int, amount: int, *, counted: bool) -> str | None:
        if self.frozen[i] or self.frozen[j]:
            return "ACCOUNT_INACTIVE"
        if counted and self.daily[i] is not None and self.used[i] + amount > self.daily[i]:  # type: ignore[operator]
            return "LIMIT_EXCEEDED"
        if self.available(i) < amount:
            return "INSUFFICIENT_FUNDS"
        return None

    def noting(self, *accounts: int) -> dict[int, int]:
        """The available balances before a change, for ``noted``."""
        return {i: self.available(i) for i in accounts}

    def noted(self, before: dict[int, int]) -> None:
        """Each monitor crossing the change made: from not below LOW to below it."""
        for i, available in before.items():
            if available >= LOW > self.available(i):
                self.alerts[i] += 1

    def apply(self, t: Sent) -> None:
        before = self.noting(t.source, t.destination)
        if not t.refund:
            self.used[t.source] += t.amount
        if t.hold:
            self.held[t.source] += t.amount
            t.status = TransferStatus.HELD
        else:
            self.balance[t.source] -= t.amount
            self.balance[t.destination] += t.amount
            t.status, t.moved = TransferStatus.COMPLETED, t.amount
        self.noted(before)

    def settle_back(self) -> None:
        """A line is back within once the available balance is not negative (the trigger's rule)."""
        self.over = [o and self.available(i) < 0 for i, o in enumerate(self.over)]


@pytest.mark.commits  # the machine's own rows, committed like production's; it asserts only on them and on global sums
def test_the_bank_follows_its_model(sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    class Bank(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.people = [make_customer() for _ in range(N)]
            with sessions.begin() as s:
                self.monitors = [
                    monitors.create(
                        s, p.account.id, p.user, field="available_balance", operator="lt", value=LOW, request_id=None
                    ).id
                    for p in self.people
                ]
            self.model = Model()
            self.sent: dict[uuid.UUID, Sent] = {}

        # ---- helpers ------------------------------------------------------------------------

        def _submit(self, i: int, j: int, amount: int, hold: bool) -> uuid.UUID | None:
            expected = self.model.refusal(i, j, amount)
            try:
                with sessions.begin() as s:
                    tid = submit_transfer(
                        s,
                        user=self.people[i].user,
                        idempotency_key=str(uuid.uuid4()),
                        movement=MoneyMovement(
                            self.people[i].account.id, self.people[j].account.id, amount, "USD", None, hold=hold
                        ),
                        partitions=4,
                    ).transfer.id
            except DomainError as error:
                assert type(error) is expected, (error, expected)
                return None
            assert expected is None
            self.sent[tid] = Sent(i, j, amount, hold)
            return tid  # type: ignore[no-any-return]

        def _settle(self, ids: list[uuid.UUID], *, atomic: bool = False) -> None:
            with sessions.begin() as s:
                settle_batch(s, ids)
            m = self.model
            if atomic:
                saved = (list(m.balance), list(m.held), list(m.used), list(m.alerts))
                for tid in ids:
                    t = self.sent[tid]
                    code = m.decide(t.source, t.destination, t.amount, counted=not t.refund)
                    if code is not None:
                        m.balance, m.held, m.used, m.alerts = (list(v) for v in saved)
                        for u in ids:
                            self.sent[u].status = TransferStatus.FAILED
                        self._expect_codes(ids, {tid: code}, default="LINKED_FAILED")
                        return
                    m.apply(t)
                self._expect_codes(ids, {}, default=None)
                return
            codes = {}
            for tid in ids:
                t = self.sent[tid]
                code = m.decide(t.source, t.destination, t.amount, counted=not t.refund)
                if code is None:
                    m.apply(t)
                else:
                    t.status, codes[tid] = TransferStatus.FAILED, code
            self._expect_codes(ids, codes, default=None)

        def _expect_codes(self, ids: list[uuid.UUID], codes: dict[uuid.UUID, str], default: str | None) -> None:
            with sessions() as s:
                got = dict(s.execute(select(Transfer.id, Transfer.failure_code).where(Transfer.id.in_(ids))).all())
            assert got == {tid: codes.get(tid, default) for tid in ids}
            self.model.settle_back()

        def _open_holds(self) -> list[uuid.UUID]:
            return [tid for tid, t in self.sent.items() if t.status == TransferStatus.HELD]

        # ---- rules --------------------------------------------------------------------------

        @rule(i=st.integers(0, N - 1), amount=st.integers(1, 1_500))
        def deposit(self, i: int, amount: int) -> None:
            if self.model.frozen[i]:
                return  # a deposit into a frozen account is refused (409) and changes nothing
            fund(sessions, admin_user, self.people[i].account, amount)
            before = self.model.noting(i)
            self.model.balance[i] += amount
            self.model.noted(before)
            self.model.settle_back()

        @rule(i=st.integers(0, N - 1), d=st.integers(1, N - 1), amount=AMOUNTS, hold=st.booleans())
        def transfer(self, i: int, d: int, amount: int, hold: bool) -> None:
            tid = self._submit(i, (i + d) % N, amount, hold)
            if tid is not None:
                self._settle([tid])

        @rule(
            i=st.integers(0, N - 1),
            items=st.lists(st.tuples(st.integers(1, N - 1), AMOUNTS, st.booleans()), min_size=1, max_size=4),
            atomic=st.booleans(),
        )
        def batch(self, i: int, items: list[tuple[int, int, bool]], atomic: bool) -> None:
            person = self.people[i]
            batch_items = [
                BatchItem(
                    str(uuid.uuid4()),
                    MoneyMovement(person.account.id, self.people[(i + d) % N].account.id, amount, "USD", None),
                    hold=hold,
                )
                for d, amount, hold in items
            ]
            refusals = [self.model.refusal(i, (i + d) % N, amount) for d, amount, _ in items]
            with sessions.begin() as s:
                result = accept_batch(s, prepare_batch(s, person.user, batch_items), user=person.user, atomic=atomic)
            if atomic and any(refusals):
                assert result.refused and result.batch_id is None
                return
            ids = []
            for (d, amount, hold), refusal, r in zip(items, refusals, result.items, strict=True):
                if refusal is not None:
                    assert type(r.error) is refusal
                    continue
                assert r.transfer is not None
                self.sent[r.transfer.id] = Sent(i, (i + d) % N, amount, hold)
                ids.append(r.transfer.id)
            if ids:
                self._settle(ids, atomic=atomic)

        @precondition(lambda self: self._open_holds())
        @rule(k=st.integers(0, 10**6), percent=st.integers(1, 100))
        def capture(self, k: int, percent: int) -> None:
            tid = self._open_holds()[k % len(self._open_holds())]
            t, m = self.sent[tid], self.model
            part = max(1, t.amount * percent // 100)
            try:
                with sessions.begin() as s:
                    holds.capture(
                        s,
                        user=self.people[t.source].user,
                        transfer_id=tid,
                        amount=part,
                        idempotency_key=str(uuid.uuid4()),
                    )
            except (AccountInactive, NotFound):
                assert m.frozen[t.source] or m.frozen[t.destination]
                return
            assert not (m.frozen[t.source] or m.frozen[t.destination])
            before = m.noting(t.source, t.destination)
            m.held[t.source] -= t.amount
            m.used[t.source] -= t.amount - part
            m.balance[t.source] -= part
            m.balance[t.destination] += part
            t.status, t.moved = TransferStatus.COMPLETED, part
            m.noted(before)
            m.settle_back()

        @precondition(lambda self: self._open_holds())
        @rule(k=st.integers(0, 10**6), expire=st.booleans())
        def end_hold(self, k: int, expire: bool) -> None:
            """A void (by the payee) or the expiry sweep: the hold's amount is released."""
            tid = self._open_holds()[k % len(self._open_holds())]
            t, m = self.sent[tid], self.model
            with sessions.begin() as s:
                if expire:
                    past = datetime.now(UTC) - timedelta(seconds=1)
                    s.execute(update(Transfer).where(Transfer.id == tid).values(hold_expires_at=past))
                    assert tid in holds.expire_due(s, now=datetime.now(UTC))
                else:
                    holds.void(
                        s, user=self.people[t.destination].user, transfer_id=tid, idempotency_key=str(uuid.uuid4())
                    )
            before = m.noting(t.source)
            m.held[t.source] -= t.amount
            m.used[t.source] -= t.amount
            m.noted(before)
            t.status = TransferStatus.EXPIRED if expire else TransferStatus.VOIDED
            m.settle_back()

        @precondition(
            lambda self: any(
                t.status == TransferStatus.COMPLETED and not t.refund and t.moved > t.refunded
                for t in self.sent.values()
            )
        )
        @rule(k=st.integers(0, 10**6), percent=st.integers(1, 100))
        def refund(self, k: int, percent: int) -> None:
            open_ = [
                tid
                for tid, t in self.sent.items()
                if t.status == TransferStatus.COMPLETED and not t.refund and t.moved > t.refunded
            ]
            original_id = open_[k % len(open_)]
            original, m = self.sent[original_id], self.model
            if m.frozen[original.source] or m.frozen[original.destination]:
                return  # a refund from or to a frozen account is refused at accept
            amount = max(1, (original.moved - original.refunded) * percent // 100)
            with sessions.begin() as s:
                tid = refund_transfer(
                    s,
                    user=self.people[original.destination].user,
                    transfer_id=original_id,
                    idempotency_key=str(uuid.uuid4()),
                    amount=amount,
                    reason=None,
                ).transfer.id
            refund = Sent(original.destination, original.source, amount, False, refund=True)
            self.sent[tid] = refund
            self._settle([tid])
            if refund.status == TransferStatus.COMPLETED:
                original.refunded += amount

        @rule(i=st.integers(0, N - 1))
        def freeze_or_unfreeze(self, i: int) -> None:
            m = self.model
            with sessions.begin() as s:
                set_frozen(
                    s,
                    self.people[i].account.id,
                    frozen=not m.frozen[i],
                    admin_id=admin_user.id,
                    reason="model",
                    request_id=None,
                )
            m.frozen[i] = not m.frozen[i]

        @rule(
            i=st.integers(0, N - 1),
            credit=st.sampled_from([0, 300, 1_000]),
            daily=st.sampled_from([None, 400, 2_000]),
            per_transfer=st.sampled_from([None, 350]),
        )
        def set_limits(self, i: int, credit: int, daily: int | None, per_transfer: int | None) -> None:
            m = self.model
            with sessions.begin() as s:
                limit_settings.set_bank_limits(
                    s,
                    self.people[i].account.id,
                    {"credit_limit": credit, "daily_outgoing": daily, "per_transfer": per_transfer},
                    admin_id=admin_user.id,
                    reason="model",
                    request_id=None,
                )
            lowered = credit < m.credit[i]
            before = m.noting(i)
            m.credit[i], m.daily[i], m.per_transfer[i] = credit, daily, per_transfer
            m.noted(before)
            if lowered and m.available(i) < 0:
                m.over[i] = True
            m.settle_back()

        # ---- invariants ---------------------------------------------------------------------

        @invariant()
        def books_match_the_model(self) -> None:
            m = self.model
            with sessions() as s:
                rows = [s.get_one(Account, p.account.id, populate_existing=True) for p in self.people]
                used = [usage.current(s, p.account.id)[0] for p in self.people]
                total = s.execute(select(func.sum(Account.balance))).scalar_one()
                alerts = [
                    s.execute(
                        select(func.count()).where(
                            DomainEvent.event_type == EventType.BALANCE_MONITOR_TRIGGERED,
                            DomainEvent.data["monitor"]["id"].astext == str(mid),
                        )
                    ).scalar_one()
                    for mid in self.monitors
                ]
                report = reconcile(s)
            assert [a.balance for a in rows] == m.balance
            assert [a.balance - a.held_amount + a.credit_limit for a in rows] == [m.available(i) for i in range(N)]
            assert [a.over_credit_line for a in rows] == m.over
            for i, a in enumerate(rows):
                assert a.balance >= -a.credit_limit or m.over[i]
            assert used == m.used
            assert alerts == m.alerts
            assert total == 0
            assert report.ok, report.problems

    run_state_machine_as_test(
        Bank,
        settings=settings(
            max_examples=examples(15),
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )
