"""The round trip of issue 24 item 4, over the API on real Postgres: payouts -> their pain.001 file ->
a camt.053 statement generated from that file (each payout debited, one of them returned, one
credit naming nobody, one credit naming a customer's inbound reference) -> import -> the payouts'
statuses, the balances and the one break as expected, the ledger summing to zero and reconcile
clean. Then the payout matching rules one by one."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from lxml import etree
from lxml.builder import ElementMaker
from sqlalchemy import func, select

from core.accounts.service import in_transit_account_id, settlement_account_id
from core.config import Settings
from core.events import DomainEvent
from core.models import AuditLog, LedgerEntry, Transfer, TransferKind
from core.reconcile import reconcile
from core.reconciliation import camt053, inbound_reference
from tests import factories
from tests.integration.test_api import assert_problem, login
from tests.integration.test_payouts import counterparty, payout_body, post_payout, settle
from tests.integration.test_reconciliations import API, post

PAIN = {"p": "urn:iso:std:iso:20022:tech:xsd:pain.001.001.03"}
C = ElementMaker(namespace=camt053.NAMESPACE, nsmap={None: camt053.NAMESPACE})
FILES = "/api/v1/admin/payout-files"


def sent_payouts(pain: bytes) -> list[tuple[str, Decimal, str]]:
    """(EndToEndId, amount, currency) of each transaction of a pain.001 file."""
    root = etree.fromstring(pain)
    return [
        (
            str(tx.findtext("p:PmtId/p:EndToEndId", namespaces=PAIN)),
            Decimal(str(tx.findtext("p:Amt/p:InstdAmt", namespaces=PAIN))),
            str(tx.find("p:Amt/p:InstdAmt", PAIN).get("Ccy")),
        )
        for tx in root.iterfind(".//p:CdtTrfTxInf", PAIN)
    ]


def entry(
    amount: Decimal, currency: str, credit: bool, ref: str, e2e: str | None = None, text: str | None = None
) -> Any:
    details = []
    if e2e:
        details.append(C.Refs(C.EndToEndId(e2e)))
    if text:
        details.append(C.RmtInf(C.Ustrd(text)))
    return C.Ntry(
        C.Amt(f"{amount:.2f}", Ccy=currency),
        C.CdtDbtInd("CRDT" if credit else "DBIT"),
        C.Sts("BOOK"),
        C.BookgDt(C.Dt(date(2026, 12, 2).isoformat())),
        C.AcctSvcrRef(ref),
        C.BkTxCd(C.Prtry(C.Cd("NTRF"))),
        *([C.NtryDtls(C.TxDtls(*details))] if details else []),
    )


def debtor_iban(pain: bytes) -> str:
    """The account a pain.001 file is paid from: the bank's own at its correspondent."""
    return str(etree.fromstring(pain).findtext(".//p:PmtInf/p:DbtrAcct/p:Id/p:IBAN", namespaces=PAIN))


def camt053_statement(entries: list[Any], currency: str = "USD", iban: str | None = None) -> bytes:
    """The correspondent's statement of those entries (checked against the XSD by the import), of
    the bank's account (the payout files' debtor, PAYOUT_DEBTOR_IBAN) unless told another."""
    iban = iban or Settings().payout_debtor_iban
    stamp = "2026-12-03T06:00:00Z"
    document = C.Document(
        C.BkToCstmrStmt(
            C.GrpHdr(C.MsgId(uuid.uuid4().hex[:30]), C.CreDtTm(stamp)),
            C.Stmt(
                C.Id(f"STMT-{uuid.uuid4().hex[:20]}"),
                C.CreDtTm(stamp),
                C.Acct(C.Id(C.IBAN(iban)), C.Ccy(currency)),
                C.Bal(
                    C.Tp(C.CdOrPrtry(C.Cd("OPBD"))),
                    C.Amt("0.00", Ccy=currency),
                    C.CdtDbtInd("CRDT"),
                    C.Dt(C.Dt("2026-12-02")),
                ),
                *entries,
            ),
        )
    )
    return bytes(etree.tostring(document, xml_declaration=True, encoding="UTF-8"))


@pytest.fixture
def alice(client, make_customer, sessions, admin_user):  # type: ignore[no-untyped-def]
    customer = make_customer()
    factories.fund(sessions, admin_user, customer.account, 100_000)
    h = login(client, customer.email)
    return customer, h, counterparty(client, h)


def make_payouts(client, sessions, alice, amounts: list[int]) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    customer, h, cp = alice
    made = []
    for amount in amounts:
        r = post_payout(client, h, payout_body(customer, cp, amount=amount))
        assert r.status_code == 202, r.json
        settle(sessions, r.json["transfer_id"])  # the money leaves the customer for in-transit
        made.append(r.json)
    return made


def send_file(client, admin_h) -> bytes:  # type: ignore[no-untyped-def]
    r = client.post(FILES, json={"currency": "USD"}, headers=admin_h)
    assert r.status_code == 201, r.json
    pain = client.get(f"{FILES}/{r.json['id']}", headers=admin_h)
    assert pain.status_code == 200
    return bytes(pain.data)


def payout_status(client, h, payout_id: str) -> str:  # type: ignore[no-untyped-def]
    return str(client.get(f"/api/v1/payouts/{payout_id}", headers=h).json["status"])


def test_payouts_file_statement_import_round_trip(client, sessions, make_customer, admin_user, alice) -> None:  # type: ignore[no-untyped-def]
    admin_h = login(client, admin_user.email)
    customer, h, _ = alice
    bob = make_customer()
    with sessions.begin() as s:  # created on first use
        in_transit, settlement = in_transit_account_id(s, "USD"), settlement_account_id(s, "USD")
    in_transit_before = factories.balance(sessions, in_transit)
    settlement_before = factories.balance(sessions, settlement)
    kept, returned, other = make_payouts(client, sessions, alice, [12_550, 4_000, 7_000])
    assert factories.balance(sessions, customer.account.id) == 100_000 - 23_550
    pain = send_file(client, admin_h)
    assert {p["id"]: payout_status(client, h, p["id"]) for p in (kept, returned, other)} == {
        kept["id"]: "SENT",
        returned["id"]: "SENT",
        other["id"]: "SENT",
    }

    # The correspondent executes the file: one debit per payout; the next day one comes back, a
    # customer of ours is paid by someone at another bank, and a credit names nobody.
    sent = sent_payouts(pain)
    assert sorted(e2e for e2e, _, _ in sent) == sorted(p["end_to_end_id"] for p in (kept, returned, other))
    ref = f"CORR{uuid.uuid4().hex[:8]}"
    entries = [entry(amount, ccy, False, f"{ref}-{n}", e2e) for n, (e2e, amount, ccy) in enumerate(sent, 1)]
    entries.append(entry(Decimal("40.00"), "USD", True, f"{ref}-R", returned["end_to_end_id"], "RETURN AC04"))
    entries.append(
        entry(Decimal("250.00"), "USD", True, f"{ref}-I", None, f"Rent {inbound_reference.of(bob.account.id)}")
    )
    entries.append(entry(Decimal("12.34"), "USD", True, f"{ref}-U", None, "INVOICE 7781"))
    # The statement is of the account the file was paid from: another account's is refused whole.
    elsewhere = camt053_statement(entries, iban="GB33BUKB20201555555555")
    refused = assert_problem(post(client, admin_h, elsewhere, "application/xml"), 422, "RECONCILIATION_FILE_INVALID")
    assert refused["where"].startswith("Stmt/Acct/Id/IBAN"), refused
    assert payout_status(client, h, kept["id"]) == "SENT"
    body = camt053_statement(entries, iban=debtor_iban(pain))
    r = post(client, admin_h, body, "application/xml")
    assert r.status_code == 201, r.json
    assert (r.json["lines"], r.json["matched"], r.json["unmatched"]) == (6, 5, 1)
    assert r.json["totals"]["USD"] == {"credits": 4_000 + 25_000 + 1_234, "debits": 23_550, "net": 6_684}

    assert payout_status(client, h, kept["id"]) == "SETTLED"
    assert payout_status(client, h, other["id"]) == "SETTLED"
    assert payout_status(client, h, returned["id"]) == "RETURNED"
    assert factories.balance(sessions, customer.account.id) == 100_000 - 23_550 + 4_000
    assert factories.balance(sessions, bob.account.id) == 25_000
    assert factories.balance(sessions, in_transit) == in_transit_before  # every payout left it
    # The correspondent account (settlement, negative while the bank holds money there) lost the
    # settled payouts and gained the return and the inbound credit; the unknown credit is a break.
    assert factories.balance(sessions, settlement) == settlement_before + 23_550 - 4_000 - 25_000

    items = client.get(f"{API}/{r.json['id']}", headers=admin_h).json["items"]
    kinds = [(i["status"], (i.get("matched_to") or {}).get("kind")) for i in items]
    assert kinds == [("MATCHED", "PAYOUT_SETTLED")] * 3 + [
        ("MATCHED", "PAYOUT_RETURNED"),
        ("MATCHED", "DEPOSIT"),
        ("UNMATCHED", None),
    ]
    with sessions() as s:
        assert s.scalar(select(func.sum(LedgerEntry.amount))) == 0
        report = reconcile(s)
        assert report.ok, report.problems
        moved = s.scalars(
            select(Transfer.kind).where(
                Transfer.kind.in_([TransferKind.PAYOUT_SETTLE, TransferKind.PAYOUT_RETURN]),
                Transfer.reference.like(f"{ref}-%"),  # this statement's lines (bank references)
            )
        )
        assert sorted(moved) == [TransferKind.PAYOUT_RETURN] + [TransferKind.PAYOUT_SETTLE] * 3
        events = {
            e.event_type.value
            for e in s.scalars(select(DomainEvent).where(DomainEvent.data["id"].astext == returned["id"]))
        }
        assert {"payout.sent", "payout.settled", "payout.returned"} <= events
        audited = s.scalars(select(AuditLog.action).where(AuditLog.entity_id == returned["id"])).all()
        assert {"payout.settled", "payout.returned"} <= set(audited)

    # The break resolved: nothing left, still balanced.
    resolved = client.post(
        f"{API}/{r.json['id']}/lines/6/resolve", json={"action": "ignore", "reason": "not ours"}, headers=admin_h
    )
    assert resolved.status_code == 200
    assert client.get(f"{API}/{r.json['id']}", headers=admin_h).json["unmatched"] == 0
    # The same statement again is refused and changes nothing.
    assert assert_problem(post(client, admin_h, body, "application/xml"), 409, "CONFLICT")["import_id"] == r.json["id"]
    assert factories.balance(sessions, customer.account.id) == 100_000 - 23_550 + 4_000


def test_a_return_before_settlement_comes_out_of_in_transit(client, sessions, admin_user, alice) -> None:  # type: ignore[no-untyped-def]
    admin_h = login(client, admin_user.email)
    customer, h, _ = alice
    (payout,) = make_payouts(client, sessions, alice, [5_000])
    send_file(client, admin_h)
    with sessions.begin() as s:
        in_transit = in_transit_account_id(s, "USD")
    before = factories.balance(sessions, in_transit)
    ref = f"CORR{uuid.uuid4().hex[:8]}"
    r = post(
        client,
        admin_h,
        camt053_statement([entry(Decimal("50.00"), "USD", True, ref, payout["end_to_end_id"])]),
        "application/xml",
    )
    assert r.status_code == 201 and r.json["matched"] == 1
    assert payout_status(client, h, payout["id"]) == "RETURNED"
    assert factories.balance(sessions, in_transit) == before - 5_000
    assert factories.balance(sessions, customer.account.id) == 100_000
    with sessions() as s:
        assert reconcile(s).ok


@pytest.mark.parametrize(
    ("case", "line"),
    [
        ("pending payout", lambda p: entry(Decimal("50.00"), "USD", False, "R", p["end_to_end_id"])),
        ("partial amount", lambda p: entry(Decimal("49.99"), "USD", False, "R", p["end_to_end_id"])),
        ("unknown end-to-end id", lambda p: entry(Decimal("50.00"), "USD", False, "R", "NOSUCHPAYOUT")),
    ],
)
def test_a_line_that_does_not_fit_its_payout_is_a_break(
    client, sessions, admin_user, alice, case: str, line: Any
) -> None:  # type: ignore[no-untyped-def]
    admin_h = login(client, admin_user.email)
    _, h, _ = alice
    (payout,) = make_payouts(client, sessions, alice, [5_000])
    if case != "pending payout":
        send_file(client, admin_h)
    status = payout_status(client, h, payout["id"])
    r = post(client, admin_h, camt053_statement([line(payout)]), "application/xml")
    assert r.status_code == 201 and (r.json["matched"], r.json["unmatched"]) == (0, 1)
    assert payout_status(client, h, payout["id"]) == status


def test_a_payout_settles_once_even_if_two_lines_name_it(client, sessions, admin_user, alice) -> None:  # type: ignore[no-untyped-def]
    admin_h = login(client, admin_user.email)
    (payout,) = make_payouts(client, sessions, alice, [5_000])
    send_file(client, admin_h)
    refs = [f"A{n}-{uuid.uuid4().hex[:8]}" for n in (1, 2)]
    debit = [entry(Decimal("50.00"), "USD", False, ref, payout["end_to_end_id"]) for ref in refs]
    r = post(client, admin_h, camt053_statement(debit), "application/xml")
    assert r.status_code == 201 and (r.json["matched"], r.json["unmatched"]) == (1, 1)
    with sessions() as s:
        settled = select(func.count()).where(Transfer.kind == TransferKind.PAYOUT_SETTLE, Transfer.reference.in_(refs))
        assert s.scalar(settled) == 1
        assert reconcile(s).ok
