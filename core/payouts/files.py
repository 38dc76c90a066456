"""Payout files: a currency's PENDING payouts in one ISO 20022 credit-transfer file (pain.001.001.03).

``create_file`` takes every PENDING payout of the currency whose transfer COMPLETED (the money is
in the bank's in-transit account), locked with FOR UPDATE SKIP LOCKED, writes the file and makes
them SENT in the same transaction: a payout is in exactly one file, also when two files are
asked for at once (the second skips the rows the first holds, and once the first commits they
are no longer PENDING).

The XML is built by ``sepaxml`` (a maintained SEPA library) and then adjusted with lxml where
sepaxml is SEPA-only: amounts in the currency's own minor unit (sepaxml assumes two decimals),
and a counterparty with a US account and ABA routing number, which pain.001.001.03 carries as
``CdtrAcct/Id/Othr/Id`` and ``CdtrAgt/FinInstnId/ClrSysMmbId`` (``USABA``) where sepaxml only
writes an IBAN. Outside EUR the file has no SEPA service level and charges are shared (SHAR).
Every file is checked against the official XSD before it is stored.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from importlib.resources import files
from typing import Any

from iso4217 import Currency
from lxml import etree
from sepaxml import SepaTransfer
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core import audit, events
from core.db import database_now
from core.errors import Conflict, NotFound
from core.events import EventType
from core.models import Transfer, TransferStatus
from core.money import validate_currency
from core.payouts.models import PAIN_001, Counterparty, Payout, PayoutFile, PayoutStatus
from core.payouts.payouts import PayoutView, payout_data

NS = f"urn:iso:std:iso:20022:tech:xsd:{PAIN_001}"
# sepaxml writes an IBAN for every creditor; a US account's placeholder, replaced below.
_PLACEHOLDER_IBAN = "US00PLACEHOLDER"


@dataclass(frozen=True)
class Debtor:
    """The bank's own account at its correspondent, which the file debits."""

    name: str
    iban: str
    bic: str | None = None


def create_file(
    session: Session, *, admin_id: uuid.UUID, currency: str, debtor: Debtor, request_id: str | None = None
) -> PayoutFile:
    """One file of every sendable payout of ``currency``; Conflict (409) when there is none."""
    validate_currency(currency)
    rows = session.execute(
        select(Payout, Counterparty)
        .join(Transfer, Transfer.id == Payout.transfer_id)
        .join(Counterparty, Counterparty.id == Payout.counterparty_id)
        .where(
            Payout.status == PayoutStatus.PENDING,
            Payout.currency == currency,
            Transfer.status == TransferStatus.COMPLETED,
        )
        .order_by(Payout.created_at, Payout.id)
        .with_for_update(of=Payout, skip_locked=True)
    ).all()
    if not rows:
        raise Conflict(f"no PENDING payout of {currency} whose money has left the customer")
    payouts = [payout for payout, _ in rows]
    message_id = uuid.uuid4().hex[:35]
    content = build_pain001(debtor, currency, rows, message_id=message_id, execution_date=database_now(session).date())
    total = sum(p.amount for p in payouts)
    payout_file = PayoutFile(
        id=uuid.uuid4(),
        currency=currency,
        format=PAIN_001,
        payout_count=len(payouts),
        total=total,
        message_id=message_id,
        content=content,
        created_by=admin_id,
    )
    session.add(payout_file)
    session.flush()  # the file's row before the payouts point at it
    session.execute(
        update(Payout)
        .where(Payout.id.in_([p.id for p in payouts]))
        .values(status=PayoutStatus.SENT, file_id=payout_file.id, updated_at=func.now())
        .execution_options(synchronize_session="fetch")
    )
    _record(session, payout_file, payouts, admin_id, request_id)
    session.refresh(payout_file)
    return payout_file


def _record(
    session: Session, payout_file: PayoutFile, payouts: Sequence[Payout], admin_id: uuid.UUID, request_id: str | None
) -> None:
    """One audit row for the file and one per payout it sent; payout.sent to each payout's owner."""
    audit.record_many(
        session,
        [
            audit.entry(
                action="payout_file.created",
                entity_type="payout_file",
                entity_id=payout_file.id,
                actor_id=admin_id,
                request_id=request_id,
                details={
                    "currency": payout_file.currency,
                    "payouts": payout_file.payout_count,
                    "total": payout_file.total,
                },
            ),
            *(
                audit.entry(
                    action="payout.sent",
                    entity_type="payout",
                    entity_id=p.id,
                    actor_id=admin_id,
                    request_id=request_id,
                    details={"file_id": str(payout_file.id), "end_to_end_id": p.end_to_end_id},
                )
                for p in payouts
            ),
        ],
    )
    for p in payouts:
        session.refresh(p)  # updated_at and status as committed
        events.emit(
            session,
            EventType.PAYOUT_SENT,
            payout_data(PayoutView(p, TransferStatus.COMPLETED, None)),
            [p.user_id],
        )


def get_file(session: Session, file_id: uuid.UUID) -> PayoutFile:
    payout_file = session.get(PayoutFile, file_id)
    if payout_file is None:
        raise NotFound("payout file not found")
    return payout_file


def build_pain001(
    debtor: Debtor,
    currency: str,
    items: Sequence[Any],
    *,
    message_id: str,
    execution_date: date,
) -> bytes:
    """The pain.001.001.03 document for ``items`` ((payout, counterparty) pairs), valid against
    the official XSD (ValueError otherwise)."""
    config: dict[str, Any] = {
        "name": debtor.name,
        "IBAN": debtor.iban,
        "batch": True,
        "currency": currency,
        "domestic": currency != "EUR",  # no SEPA service level outside EUR
    }
    if debtor.bic:
        config["BIC"] = debtor.bic
    sepa = SepaTransfer(config, schema=PAIN_001, clean=True)
    for payout, counterparty in items:
        sepa.add_payment(
            {
                "name": counterparty.name,
                "IBAN": counterparty.iban or _PLACEHOLDER_IBAN,
                "amount": payout.amount,  # rewritten below in the currency's own minor unit
                "currency": currency,
                "execution_date": execution_date,
                "description": payout.reference or f"Payout {payout.end_to_end_id}",
                "endtoend_id": payout.end_to_end_id,
            }
        )
    root = etree.fromstring(sepa.export(validate=False))
    # Our own message id: unique by the file's row (sepaxml draws a timestamp and 48 random bits).
    root.find(_q("CstmrCdtTrfInitn/GrpHdr/MsgId")).text = message_id
    _adjust(root, currency, {p.end_to_end_id: (p, c) for p, c in items})
    content: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    check_schema(content)
    return content


def _q(path: str) -> str:
    return "/".join(f"{{{NS}}}{step}" for step in path.split("/"))


def _adjust(root: Any, currency: str, by_e2e: dict[str, tuple[Payout, Counterparty]]) -> None:
    exponent = Currency(currency).exponent or 0
    initiation = root.find(_q("CstmrCdtTrfInitn"))
    for info in initiation.findall(_q("PmtInf")):
        info_total = 0
        for tx in info.findall(_q("CdtTrfTxInf")):
            payout, counterparty = by_e2e[tx.findtext(_q("PmtId/EndToEndId"))]
            tx.find(_q("Amt/InstdAmt")).text = major_units(payout.amount, exponent)
            info_total += payout.amount
            if counterparty.iban is None:
                _us_account(tx, counterparty)
        info.find(_q("CtrlSum")).text = major_units(info_total, exponent)
        if currency != "EUR":
            info.find(_q("ChrgBr")).text = "SHAR"  # SLEV (service level) names SEPA's rules
    total = sum(p.amount for p, _ in by_e2e.values())
    initiation.find(_q("GrpHdr/CtrlSum")).text = major_units(total, exponent)


def _us_account(tx: Any, counterparty: Counterparty) -> None:
    """A US account: ``CdtrAcct/Id/Othr/Id`` and the ABA routing number as the creditor agent's
    clearing system member id, where the schema's order puts the agent (before ``Cdtr``)."""
    account_id = tx.find(_q("CdtrAcct/Id"))
    account_id.clear()
    other = etree.SubElement(account_id, f"{{{NS}}}Othr")
    etree.SubElement(other, f"{{{NS}}}Id").text = counterparty.account_number
    agent = etree.Element(f"{{{NS}}}CdtrAgt")
    member = etree.SubElement(etree.SubElement(agent, f"{{{NS}}}FinInstnId"), f"{{{NS}}}ClrSysMmbId")
    etree.SubElement(etree.SubElement(member, f"{{{NS}}}ClrSysId"), f"{{{NS}}}Cd").text = "USABA"
    etree.SubElement(member, f"{{{NS}}}MmbId").text = counterparty.routing_number
    tx.find(_q("Cdtr")).addprevious(agent)


def major_units(amount: int, exponent: int) -> str:
    """Minor units as the decimal text pain.001 wants (``12550``, 2 -> ``125.50``), exactly."""
    return f"{Decimal(amount).scaleb(-exponent):.{exponent}f}"


def check_schema(content: bytes) -> None:
    """ValueError unless ``content`` is valid against the official pain.001.001.03 XSD (the copy
    sepaxml ships). The schema is parsed per call: files are few, and an XMLSchema object and its
    error log are not shared between request threads that way."""
    xsd = files("sepaxml").joinpath("schemas", f"{PAIN_001}.xsd").read_bytes()
    schema = etree.XMLSchema(etree.fromstring(xsd))
    if not schema.validate(etree.fromstring(content)):
        raise ValueError(f"payout file is not valid {PAIN_001}: {schema.error_log.last_error}")
