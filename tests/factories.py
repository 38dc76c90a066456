"""Small factories that drive the same core services as the API."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.audit.seal import SEAL_LOCK
from core.identity import admin as admins
from core.identity import kyc, pin_checks, users
from core.models import Account, User
from core.resources import Policies
from core.transfers.deposit import deposit

PASSWORD = "correct horse battery staple"
PIN = "1234"


@dataclass
class Customer:
    user: User
    account: Account
    email: str


def admin(sessions: sessionmaker[Session]) -> User:
    with sessions.begin() as s:
        return admins.create_admin(s, email=f"admin.{uuid.uuid4().hex[:10]}@bank.local", password=PASSWORD)


def customer(
    sessions: sessionmaker[Session],
    settings,  # type: ignore[no-untyped-def]
    *,
    approved: bool = True,
    currency: str = "USD",
    pin: str | None = PIN,
) -> Customer:
    email = f"c.{uuid.uuid4().hex[:12]}@example.com"
    with sessions.begin() as s:
        user, account = users.register(s, email=email, password=PASSWORD, full_name="Test", currency=currency)
        if approved:
            kyc.decide_kyc(s, user_id=user.id, approve=True, admin_id=user.id)
        if pin:
            pin_checks.set_pin(
                s,
                user_id=user.id,
                pin=pin,
                current_pin=None,
                policy=Policies.from_settings(settings).pins,
                now=datetime.now(UTC),
            )
    with sessions() as s:
        return Customer(s.get_one(User, user.id), s.get_one(Account, account.id), email)


def fund(sessions: sessionmaker[Session], admin_user: User, account: Account, amount: int) -> None:
    with sessions.begin() as s:
        deposit(
            s,
            admin_id=admin_user.id,
            account_id=account.id,
            amount=amount,
            currency=account.currency,
            reference="test funding",
            idempotency_key=str(uuid.uuid4()),
        )


def balance(sessions: sessionmaker[Session], account_id: uuid.UUID) -> int:
    with sessions() as s:
        return s.get_one(Account, account_id).balance


def seal_all(sessions: sessionmaker[Session]) -> int:
    """Run the audit sealer until every finished transaction's rows are chained, as the beat task does."""
    from core.audit.seal import seal

    total = 0
    deadline = time.monotonic() + 30
    while True:
        with sessions.begin() as s:
            result = seal(s)
        if result.busy:  # the e2e tier's beat may be sealing at the same moment: it ends soon
            assert time.monotonic() < deadline, "the sealer lock stayed taken"
            time.sleep(0.05)
            continue
        total += result.sealed
        if result.sealed == 0:
            return total


@contextmanager
def sealer_paused(sessions: sessionmaker[Session]) -> Iterator[None]:
    """Hold the sealer's lock (as a session lock) so no background sealer runs meanwhile."""
    with sessions() as s:
        s.execute(select(func.pg_advisory_lock(SEAL_LOCK)))
        try:
            yield
        finally:
            s.execute(select(func.pg_advisory_unlock(SEAL_LOCK)))
            s.commit()
