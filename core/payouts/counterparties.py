"""Counterparties: created and read by their owner only (someone else's is a 404)."""

from __future__ import annotations

import uuid

from schwifty import IBAN
from schwifty.exceptions import SchwiftyException
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit
from core.errors import NotFound, ValidationFailed
from core.models import Role, User
from core.money import validate_currency
from core.pagination import Page, newest_first, paginate
from core.payouts.models import Counterparty

_ABA_WEIGHTS = (3, 7, 1) * 3


def create(
    session: Session,
    *,
    user: User,
    name: str,
    currency: str,
    iban: str | None = None,
    account_number: str | None = None,
    routing_number: str | None = None,
    request_id: str | None = None,
) -> Counterparty:
    """A counterparty with exactly one destination: an IBAN (check digits and the country's
    length, by schwifty) or an account number with an ABA routing number."""
    validate_currency(currency)
    if (iban is None) == (account_number is None and routing_number is None):
        raise ValidationFailed(
            "give either iban, or account_number and routing_number",
            errors={"iban": ["Give either iban, or account_number and routing_number."]},
        )
    if iban is not None:
        iban = _checked_iban(iban)
    elif account_number is None or routing_number is None:
        missing = "account_number" if account_number is None else "routing_number"
        raise ValidationFailed(f"{missing} is required", errors={missing: ["Required with the other."]})
    else:
        _check_routing_number(routing_number)
    counterparty = Counterparty(
        id=uuid.uuid4(),
        user_id=user.id,
        name=name,
        iban=iban,
        account_number=account_number,
        routing_number=routing_number,
        currency=currency,
    )
    session.add(counterparty)
    session.flush()  # created_at, from the database, for the response
    audit.record(
        session,
        action="counterparty.created",
        entity_type="counterparty",
        entity_id=counterparty.id,
        actor_id=user.id,
        request_id=request_id,
        details={"currency": currency, "kind": "iban" if iban else "us_account"},
    )
    session.refresh(counterparty)
    return counterparty


def _checked_iban(text: str) -> str:
    try:
        return IBAN(text).compact
    except (SchwiftyException, ValueError) as error:
        raise ValidationFailed(f"invalid IBAN: {error}", errors={"iban": [f"Invalid IBAN: {error}."]}) from error


def _check_routing_number(number: str) -> None:
    """ABA routing numbers carry a weighted checksum (3, 7, 1) that is 0 modulo 10."""
    if not (len(number) == 9 and number.isascii() and number.isdigit()) or (
        sum(int(d) * w for d, w in zip(number, _ABA_WEIGHTS, strict=True)) % 10
    ):
        raise ValidationFailed("invalid routing number", errors={"routing_number": ["Not an ABA routing number."]})


def get_owned(session: Session, counterparty_id: uuid.UUID, user: User) -> Counterparty:
    """The caller's counterparty (an admin sees any); anyone else's is a 404."""
    counterparty = session.get(Counterparty, counterparty_id)
    if counterparty is None or (counterparty.user_id != user.id and user.role != Role.ADMIN):
        raise NotFound("counterparty not found")
    return counterparty


def list_owned(session: Session, user: User, *, cursor: str | None, limit: int) -> Page[Counterparty]:
    stmt = select(Counterparty)
    if user.role != Role.ADMIN:
        stmt = stmt.where(Counterparty.user_id == user.id)
    return paginate(session, stmt, newest_first(Counterparty), cursor, limit)
