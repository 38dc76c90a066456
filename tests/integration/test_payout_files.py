"""Payout files (API.md "External money and reconciliation"): POST /admin/payout-files gathers a
currency's PENDING payouts whose transfer COMPLETED into one pain.001.001.03 file, valid against
the official XSD (vendored in tests/fixtures/iso20022), and makes them SENT in the same
transaction: a payout is in exactly one file, also when files are asked for at once."""

from __future__ import annotations

import threading
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from sqlalchemy import func, select, text

from core.errors import Conflict
from core.events import DomainEvent, EventType
from core.models import AuditLog
from core.payouts import files
from core.payouts.models import Counterparty, Payout, PayoutFile, PayoutStatus
from core.reconcile import reconcile
from tests.factories import fund
from tests.integration.test_api import assert_problem, login
from tests.integration.test_payouts import counterparty, payout_body, post_payout, settle

FILES = "/api/v1/admin/payout-files"
XSD = Path(__file__).resolve().parent.parent / "fixtures" / "iso20022" / "pain.001.001.03.xsd"
NS = {"p": "urn:iso:std:iso:20022:tech:xsd:pain.001.001.03"}


def official_schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(XSD)))


def sent_payout(client, sessions, customer, headers, to: str, amount: int, currency: str = "USD") -> dict[str, Any]:  # type: ignore[no-untyped-def]
    r = post_payout(client, headers, payout_body(customer, to, amount=amount, currency=currency))
    assert r.status_code == 202, r.json
    settle(sessions, r.json["transfer_id"])
    return r.json  # type: ignore[no-any-return]


def test_a_file_sends_every_completed_pending_payout_once(client, sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_customer(currency="SEK")
    fund(sessions, admin_user, alice.account, 100_000)
    h = login(client, alice.email)
    iban = counterparty(client, h, currency="SEK", iban="SE4550000000058398257466")
    us = counterparty(client, h, currency="SEK", account_number="000123456789", routing_number="021000021")
    first = sent_payout(client, sessions, alice, h, iban, 12_550, "SEK")
    second = sent_payout(client, sessions, alice, h, us, 7, "SEK")
    unsettled = post_payout(client, h, payout_body(alice, iban, amount=300, currency="SEK")).json
    failed = post_payout(client, h, payout_body(alice, iban, amount=999_999, currency="SEK")).json
    settle(sessions, failed["transfer_id"])  # INSUFFICIENT_FUNDS

    admin_h = login(client, admin_user.email)
    r = client.post(FILES, json={"currency": "SEK"}, headers=admin_h)
    assert r.status_code == 201, r.json
    made = r.json
    assert (made["format"], made["payouts"], made["total"], made["currency"]) == ("pain.001.001.03", 2, 12_557, "SEK")
    for payout in (first, second):
        shown = client.get(f"/api/v1/payouts/{payout['id']}", headers=h).json
        assert (shown["status"], shown["file_id"]) == ("SENT", made["id"])
    assert client.get(f"/api/v1/payouts/{unsettled['id']}", headers=h).json["status"] == "PENDING"
    assert client.get(f"/api/v1/payouts/{failed['id']}", headers=h).json["status"] == "FAILED"

    download = client.get(f"{FILES}/{made['id']}", headers=admin_h)
    assert download.status_code == 200 and download.mimetype == "application/xml"
    doc = etree.fromstring(download.data)
    schema = official_schema()
    assert schema.validate(doc), schema.error_log
    txs = {tx.findtext("p:PmtId/p:EndToEndId", namespaces=NS): tx for tx in doc.iterfind(".//p:CdtTrfTxInf", NS)}
    assert set(txs) == {first["end_to_end_id"], second["end_to_end_id"]}
    assert txs[first["end_to_end_id"]].findtext("p:Amt/p:InstdAmt", namespaces=NS) == "125.50"
    assert txs[first["end_to_end_id"]].find("p:Amt/p:InstdAmt", NS).get("Ccy") == "SEK"
    assert txs[first["end_to_end_id"]].findtext("p:CdtrAcct/p:Id/p:IBAN", namespaces=NS) == "SE4550000000058398257466"
    us_tx = txs[second["end_to_end_id"]]
    assert us_tx.findtext("p:Amt/p:InstdAmt", namespaces=NS) == "0.07"
    assert us_tx.findtext("p:CdtrAcct/p:Id/p:Othr/p:Id", namespaces=NS) == "000123456789"
    member = us_tx.find("p:CdtrAgt/p:FinInstnId/p:ClrSysMmbId", NS)
    assert member.findtext("p:ClrSysId/p:Cd", namespaces=NS) == "USABA"
    assert member.findtext("p:MmbId", namespaces=NS) == "021000021"
    header = doc.find("p:CstmrCdtTrfInitn/p:GrpHdr", NS)
    assert (header.findtext("p:NbOfTxs", namespaces=NS), header.findtext("p:CtrlSum", namespaces=NS)) == ("2", "125.57")
    assert doc.find(".//p:SvcLvl", NS) is None  # SEPA's service level is for EUR only

    with sessions() as s:
        assert s.scalar(select(AuditLog.action).where(AuditLog.entity_id == made["id"])) == "payout_file.created"
        sent_audit = select(func.count()).where(AuditLog.action == "payout.sent", AuditLog.entity_id == first["id"])
        assert s.scalar(sent_audit) == 1
        events = s.scalars(select(DomainEvent).where(DomainEvent.event_type == EventType.PAYOUT_SENT)).all()
        mine = [e for e in events if e.data["id"] in (first["id"], second["id"])]
        assert sorted(e.data["status"] for e in mine) == ["SENT", "SENT"]
        assert all(e.owner_ids == [alice.user.id] and e.data["file_id"] == made["id"] for e in mine)
    # Nothing left to send: the unsettled one's transfer has not completed, the failed one never will.
    assert_problem(client.post(FILES, json={"currency": "SEK"}, headers=admin_h), 409, "CONFLICT")
    settle(sessions, unsettled["transfer_id"])
    again = client.post(FILES, json={"currency": "SEK"}, headers=admin_h)
    assert again.status_code == 201 and (again.json["payouts"], again.json["total"]) == (1, 300)


def test_euro_files_carry_the_sepa_service_level(client, sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_customer(currency="EUR")
    fund(sessions, admin_user, alice.account, 10_000)
    h = login(client, alice.email)
    sent_payout(client, sessions, alice, h, counterparty(client, h, currency="EUR"), 1_000, "EUR")
    admin_h = login(client, admin_user.email)
    r = client.post(FILES, json={"currency": "EUR"}, headers=admin_h)
    assert r.status_code == 201, r.json
    doc = etree.fromstring(client.get(f"{FILES}/{r.json['id']}", headers=admin_h).data)
    assert official_schema().validate(doc)
    assert doc.findtext(".//p:PmtTpInf/p:SvcLvl/p:Cd", namespaces=NS) == "SEPA"
    assert doc.findtext(".//p:PmtInf/p:ChrgBr", namespaces=NS) == "SLEV"


@pytest.mark.parametrize(("currency", "amount", "shown"), [("JPY", 1_234, "1234"), ("BHD", 1_234, "1.234")])
def test_amounts_are_written_in_the_currencys_own_minor_unit(currency: str, amount: int, shown: str) -> None:
    payout = Payout(amount=amount, end_to_end_id=uuid.uuid4().hex, reference=None)
    to = Counterparty(name="Ünïcode Name " * 10, iban="DE89370400440532013000")
    debtor = files.Debtor("Bank", "DE89370400440532013000", "COBADEFFXXX")
    content = files.build_pain001(debtor, currency, [(payout, to)], message_id="m-1", execution_date=_today())
    doc = etree.fromstring(content)
    assert official_schema().validate(doc)
    assert doc.findtext(".//p:InstdAmt", namespaces=NS) == shown
    assert Decimal(doc.findtext(".//p:GrpHdr/p:CtrlSum", namespaces=NS)) == Decimal(shown)
    assert doc.findtext(".//p:GrpHdr/p:MsgId", namespaces=NS) == "m-1"


def test_a_file_the_schema_refuses_is_never_stored() -> None:
    payout = Payout(amount=100, end_to_end_id="x" * 36, reference=None)  # EndToEndId is Max35Text
    to = Counterparty(name="X", iban="DE89370400440532013000")
    with pytest.raises(ValueError, match=r"not valid pain\.001\.001\.03"):
        debtor = files.Debtor("Bank", "DE89370400440532013000")
        files.build_pain001(debtor, "EUR", [(payout, to)], message_id="m", execution_date=_today())


def test_payout_files_are_for_admins_and_bad_input_is_refused(client, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    h = login(client, make_customer().email)
    assert_problem(client.post(FILES, json={"currency": "USD"}, headers=h), 403, "FORBIDDEN")
    assert_problem(client.get(f"{FILES}/{uuid.uuid4()}", headers=h), 403, "FORBIDDEN")
    admin_h = login(client, admin_user.email)
    assert_problem(client.post(FILES, json={"currency": "ZZZ"}, headers=admin_h), 422, "VALIDATION_ERROR")
    assert_problem(client.post(FILES, json={}, headers=admin_h), 422, "VALIDATION_ERROR")
    assert_problem(client.post(FILES, json={"currency": "USD", "x": 1}, headers=admin_h), 422, "VALIDATION_ERROR")
    assert_problem(client.get(f"{FILES}/{uuid.uuid4()}", headers=admin_h), 404, "NOT_FOUND")


def _today():  # type: ignore[no-untyped-def]
    from datetime import date

    return date(2026, 12, 3)


@pytest.mark.commits  # threads on their own connections race for the same payouts' rows
def test_concurrent_files_send_each_payout_exactly_once(client, sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    # A currency no other test pays out in: the files take only this test's payouts.
    alice = make_customer(currency="ISK")
    fund(sessions, admin_user, alice.account, 1_000_000)
    h = login(client, alice.email)
    to = counterparty(client, h, currency="ISK", iban="IS140159260076545510730339")
    mine = {sent_payout(client, sessions, alice, h, to, 100 + i, "ISK")["id"] for i in range(6)}
    start = threading.Barrier(4)
    made: list[uuid.UUID] = []
    conflicts: list[Conflict] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with sessions.begin() as s:
                start.wait()
                payout_file = files.create_file(
                    s, admin_id=admin_user.id, currency="ISK", debtor=files.Debtor("Bank", "DE89370400440532013000")
                )
                made.append(payout_file.id)
                s.execute(text("SELECT pg_sleep(0.1)"))  # hold the rows while the others look
        except Conflict as exc:
            conflicts.append(exc)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(made) >= 1 and len(made) + len(conflicts) == 4
    with sessions() as s:
        payouts = s.scalars(select(Payout).where(Payout.id.in_([uuid.UUID(i) for i in mine]))).all()
        assert {p.status for p in payouts} == {PayoutStatus.SENT} and {p.file_id for p in payouts} <= set(made)
        in_files = [
            e2e
            for f in s.scalars(select(PayoutFile).where(PayoutFile.id.in_(made)))
            for e2e in etree.fromstring(f.content).xpath("//p:EndToEndId/text()", namespaces=NS)
        ]
        assert sorted(in_files) == sorted(p.end_to_end_id for p in payouts)  # each in exactly one file
        sent = select(func.count()).where(AuditLog.action == "payout.sent", AuditLog.entity_id.in_(mine))
        assert s.scalar(sent) == len(mine)


def test_reconcile_holds_in_transit_to_its_payouts(client, sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_customer(currency="NOK")
    fund(sessions, admin_user, alice.account, 10_000)
    h = login(client, alice.email)
    to = counterparty(client, h, currency="NOK", iban="NO9386011117947")
    first = sent_payout(client, sessions, alice, h, to, 1_000, "NOK")
    assert client.post(FILES, json={"currency": "NOK"}, headers=login(client, admin_user.email)).status_code == 201
    sent_payout(client, sessions, alice, h, to, 200, "NOK")  # completed, not in a file yet: in transit too
    post_payout(client, h, payout_body(alice, to, amount=300, currency="NOK"))  # not settled: not in transit
    with sessions() as s:
        assert [p for p in reconcile(s).problems if "in-transit" in p] == []
    with sessions.begin() as s:  # a payout marked SETTLED whose money never left in-transit
        s.execute(text("UPDATE payouts SET status = 'SETTLED' WHERE id = :id"), {"id": first["id"]})
    with sessions() as s:
        problems = [p for p in reconcile(s).problems if "in-transit" in p]
        assert len(problems) == 1 and "NOK" in problems[0] and "1200" in problems[0], problems
