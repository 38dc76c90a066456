"""Statement imports (API.md "External money and reconciliation"): camt.053, BAI2 and CSV sample
files (tests/fixtures/reconciliation) imported over the API into real Postgres; inbound credits
become deposits through core/transfers/deposit.py, the rest waits as breaks for an admin."""

from __future__ import annotations

import uuid
from pathlib import Path
from string import Template
from typing import Any

import pytest
from sqlalchemy import func, select

from core.models import AuditLog, LedgerEntry, Transfer, TransferKind
from core.reconcile import reconcile
from core.reconciliation import inbound_reference
from core.reconciliation.models import ReconciliationImport, ReconciliationLine
from tests import factories
from tests.integration.test_api import assert_problem, login

API = "/api/v1/admin/reconciliations"
FIXTURES = Path(__file__).parent.parent / "fixtures" / "reconciliation"
FILES = {
    "camt": ("statement.camt053.xml", "application/xml"),
    "bai2": ("statement.bai2", "text/plain"),
    "csv": ("statement.csv", "text/csv"),
}
UNKNOWN_CREDIT = 1234  # the files' fourth line: a credit naming nobody
INBOUND = 30000  # the files' third line: a credit naming a customer's inbound reference


def statement(kind: str, **values: str) -> tuple[bytes, str]:
    """A sample file with its placeholders filled in; by default its payout lines name no payout."""
    name, media_type = FILES[kind]
    filled = {
        "message_id": uuid.uuid4().hex[:20],
        "statement_id": f"STMT-{uuid.uuid4().hex[:12]}",
        "ref": f"CORR{uuid.uuid4().hex[:8]}",
        "settled_e2e": f"E2E{uuid.uuid4().hex[:12]}",
        "returned_e2e": f"E2E{uuid.uuid4().hex[:12]}",
        "settled_minor": "12550",
        "returned_minor": "4000",
        "inbound": "BK00NOBODY",
        **values,
    }
    filled.setdefault("settled_amount", _major(filled["settled_minor"]))
    filled.setdefault("returned_amount", _major(filled["returned_minor"]))
    total = 1000000 + int(filled["settled_minor"]) + int(filled["returned_minor"]) + INBOUND + UNKNOWN_CREDIT
    filled.setdefault("account_total", str(total))
    return Template((FIXTURES / name).read_text()).substitute(filled).encode(), media_type


def _major(minor: str) -> str:
    return f"{int(minor) // 100}.{int(minor) % 100:02d}"


def post(client: Any, headers: dict[str, str], body: bytes, media_type: str) -> Any:
    return client.post(API, data=body, headers={**headers, "Content-Type": media_type})


@pytest.fixture
def admin_h(client, admin_user) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return login(client, admin_user.email)


def _count(sessions: Any, model: Any) -> int:
    with sessions() as s:
        return int(s.scalar(select(func.count()).select_from(model)))


@pytest.mark.parametrize("kind", sorted(FILES))
def test_an_inbound_credit_is_a_deposit_and_the_rest_are_breaks(
    client, sessions, make_customer, admin_h, kind: str
) -> None:  # type: ignore[no-untyped-def]
    alice = make_customer()
    code = client.get(f"/api/v1/accounts/{alice.account.id}", headers=login(client, alice.email)).json[
        "inbound_reference"
    ]
    assert code == inbound_reference.of(alice.account.id)
    body, media_type = statement(kind, inbound=code)
    r = post(client, admin_h, body, media_type)
    assert r.status_code == 201, r.json
    # No SENT payout carries the payout lines' end-to-end ids: they are breaks too.
    assert (r.json["lines"], r.json["matched"], r.json["unmatched"], r.json["already_imported"]) == (4, 1, 3, 0)
    assert r.json["totals"] == {"USD": {"credits": 4000 + INBOUND + UNKNOWN_CREDIT, "debits": 12550, "net": 22684}}
    assert factories.balance(sessions, alice.account.id) == INBOUND

    got = client.get(f"{API}/{r.json['id']}", headers=admin_h).json
    assert [i["status"] for i in got["items"]] == ["UNMATCHED", "UNMATCHED", "MATCHED", "UNMATCHED"]
    deposit = got["items"][2]["matched_to"]
    assert deposit["kind"] == "DEPOSIT" and deposit["account_id"] == str(alice.account.id)
    with sessions() as s:
        transfer = s.get_one(Transfer, uuid.UUID(deposit["transfer_id"]))
        assert transfer.kind == TransferKind.DEPOSIT and transfer.amount == INBOUND
        mine = AuditLog.details["import_id"].astext == r.json["id"]
        matched = s.scalars(select(AuditLog).where(AuditLog.action == "reconciliation.line_matched", mine)).all()
        assert [a.details["match"] for a in matched] == ["DEPOSIT"]
        assert matched[0].details == {
            "import_id": r.json["id"],
            "line": 3,
            "match": "DEPOSIT",
            "transfer_id": deposit["transfer_id"],
            "payout_id": None,
            "account_id": str(alice.account.id),
            "amount": INBOUND,
            "currency": "USD",
            "bank_reference": matched[0].details["bank_reference"],
        }
        assert s.scalar(select(func.count()).where(AuditLog.action == "deposit.completed")) >= 1
        assert reconcile(s).ok


def test_the_same_file_or_statement_again_is_409_naming_the_first(client, sessions, admin_h) -> None:  # type: ignore[no-untyped-def]
    imports_before = _count(sessions, ReconciliationImport)  # a committing test's may be there
    body, media_type = statement("camt", statement_id=f"STMT-{uuid.uuid4().hex[:8]}")
    first = post(client, admin_h, body, media_type)
    assert first.status_code == 201, first.json
    again = assert_problem(post(client, admin_h, body, media_type), 409, "CONFLICT")
    assert again["import_id"] == first.json["id"]
    # Another file (other references) with the same camt.053 statement id: refused as well.
    other, _ = statement("camt", statement_id=first.json["statement_id"])
    assert assert_problem(post(client, admin_h, other, media_type), 409, "CONFLICT")["import_id"] == first.json["id"]
    assert _count(sessions, ReconciliationImport) == imports_before + 1


def test_an_overlapping_file_matches_nothing_twice(client, sessions, make_customer, admin_h) -> None:  # type: ignore[no-untyped-def]
    alice = make_customer()
    ref = f"CORR{uuid.uuid4().hex[:8]}"
    body, _ = statement("csv", inbound=inbound_reference.of(alice.account.id), ref=ref)
    first = post(client, admin_h, body, "text/csv")
    assert first.status_code == 201 and first.json["matched"] == 1
    # The next day's file repeats yesterday's lines and adds one: only the new line is taken.
    later = body + f"2026-12-02,777,USD,{ref}-5,,New Payer\n".encode()
    second = post(client, admin_h, later, "text/csv")
    assert second.status_code == 201, second.json
    assert (second.json["lines"], second.json["already_imported"], second.json["matched"]) == (5, 4, 0)
    assert second.json["unmatched"] == 1
    assert factories.balance(sessions, alice.account.id) == INBOUND
    items = client.get(f"{API}/{second.json['id']}", headers=admin_h).json["items"]
    assert [(i["line"], i["amount"]) for i in items] == [(5, 777)]


OTHR = "<Othr><Id>400012345678</Id></Othr>"  # the camt.053 sample's account: the configured number


def _replace(body: bytes, old: str, new: str, count: int = 1) -> bytes:
    text = body.decode()
    assert old in text, old
    return text.replace(old, new, count).encode()


@pytest.mark.parametrize(
    ("kind", "break_it", "where"),
    [
        ("csv", lambda b: _replace(b, "1234,USD", "12.34,USD"), "line 5"),  # a fraction of a minor unit
        ("csv", lambda b: b"\xef\xbb\xbf" + b, "byte 0"),  # a byte order mark
        ("csv", lambda b: _replace(b, "2026-12-01,1234", "2026-13-01,1234"), "line 5"),  # no such date
        ("csv", lambda b: _replace(b, "1234,USD", "1234,EUR"), "line 5"),  # another currency mid-statement
        ("csv", lambda b: _replace(b, "booking_date,amount", "date,amount"), "line 1"),  # the header
        ("csv", lambda b: _replace(b, "1234,USD,", "1234,USD,,"), "line 5"),  # a field too many
        ("camt", lambda b: _replace(b, ">12.34<", ">12.345<"), "Stmt/Ntry[4] (line 60)/Amt"),
        ("camt", lambda b: _replace(b, '<Amt Ccy="USD">300.00', '<Amt Ccy="EUR">300.00'), "Stmt/Ntry[3] (line 47)/Amt"),
        (
            "camt",
            lambda b: _replace(b, "<BookgDt><Dt>2026-12-01", "<BookgDt><Dt>2026-02-30"),
            "Document/BkToCstmrStmt/Stmt/Ntry[1]/BookgDt/Dt (line 27)",
        ),
        ("camt", lambda b: _replace(b, "<Sts>BOOK</Sts>", ""), "Document/BkToCstmrStmt/Stmt/Ntry[1]/BookgDt (line 27)"),
        ("camt", lambda b: b[:-40], "line 72"),  # cut off: not well-formed
        ("bai2", lambda b: _replace(b, "16,195,1234", "16,195,12.34"), "line 7"),
        ("bai2", lambda b: _replace(b, "16,195,1234", "16,195,+1234"), "line 7"),
        ("bai2", lambda b: _replace(b, "03,400012345678,USD", "03,400012345678,EUR"), "line 3"),
        ("bai2", lambda b: _replace(b, "49,", "49,1"), "line 9"),  # the control total does not add up
        ("bai2", lambda b: _replace(b, ",261201,", ",261301,"), "line 2"),  # no such as-of date
        # Another account's statement (not PAYOUT_DEBTOR_IBAN / PAYOUT_DEBTOR_ACCOUNT_NUMBER): its
        # inbound credit must not credit alice with money that never reached the bank.
        (
            "camt",
            lambda b: _replace(b, "<Id>400012345678</Id>", "<Id>400012345679</Id>"),
            "Stmt/Acct/Id/Othr/Id (line 14)",
        ),
        ("camt", lambda b: _replace(b, OTHR, "<IBAN>GB33BUKB20201555555555</IBAN>"), "Stmt/Acct/Id/IBAN (line 14)"),
        ("bai2", lambda b: _replace(b, "03,400012345678,", "03,999912345678,"), "line 3"),
    ],
)
def test_a_malformed_file_is_422_naming_the_fault_and_writes_nothing(
    client, sessions, make_customer, admin_h, kind: str, break_it: Any, where: str
) -> None:  # type: ignore[no-untyped-def]
    alice = make_customer()
    body, media_type = statement(kind, inbound=inbound_reference.of(alice.account.id))
    counts = [_count(sessions, model) for model in (AuditLog, ReconciliationImport, ReconciliationLine)]
    problem = assert_problem(post(client, admin_h, break_it(body), media_type), 422, "RECONCILIATION_FILE_INVALID")
    assert problem["where"] == where, problem
    assert problem["detail"].startswith(where)
    # Its good lines (the inbound credit among them) changed nothing either.
    assert factories.balance(sessions, alice.account.id) == 0
    assert [_count(sessions, model) for model in (AuditLog, ReconciliationImport, ReconciliationLine)] == counts


def test_a_statement_naming_the_banks_iban_is_its_account(client, sessions, make_customer, admin_h, settings) -> None:  # type: ignore[no-untyped-def]
    alice = make_customer()
    body, media_type = statement("camt", inbound=inbound_reference.of(alice.account.id))
    body = _replace(body, OTHR, f"<IBAN>{settings.payout_debtor_iban}</IBAN>")
    r = post(client, admin_h, body, media_type)
    assert r.status_code == 201, r.json
    assert r.json["matched"] == 1 and factories.balance(sessions, alice.account.id) == INBOUND


def test_a_doctype_is_refused_and_no_entity_is_read(client, admin_h) -> None:  # type: ignore[no-untyped-def]
    xxe = (
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02">&x;</Document>'
    )
    problem = assert_problem(post(client, admin_h, xxe, "application/xml"), 422, "RECONCILIATION_FILE_INVALID")
    assert "root:" not in problem["detail"]


def test_an_oversized_file_is_413_and_an_unknown_type_415(client, admin_h) -> None:  # type: ignore[no-untyped-def]
    huge = b"booking_date,amount,currency,reference,end_to_end_id,counterparty\n" + b"x" * (11 * 1024 * 1024)
    assert_problem(post(client, admin_h, huge, "text/csv"), 413, "PAYLOAD_TOO_LARGE")
    body, _ = statement("csv")
    assert_problem(post(client, admin_h, body, "application/json"), 415, "UNSUPPORTED_MEDIA_TYPE")
    assert_problem(post(client, admin_h, b"", "text/csv"), 422, "RECONCILIATION_FILE_INVALID")


def test_customers_cannot_import_read_or_resolve(client, make_customer, admin_h) -> None:  # type: ignore[no-untyped-def]
    body, _ = statement("csv")
    imported = post(client, admin_h, body, "text/csv").json["id"]
    alice = make_customer()
    h = login(client, alice.email)
    assert_problem(post(client, h, statement("csv")[0], "text/csv"), 403, "FORBIDDEN")
    assert_problem(client.get(f"{API}/{imported}", headers=h), 403, "FORBIDDEN")
    r = client.post(f"{API}/{imported}/lines/4/resolve", json={"action": "ignore", "reason": "x"}, headers=h)
    assert_problem(r, 403, "FORBIDDEN")
    assert_problem(client.post(API, data=body, headers={"Content-Type": "text/csv"}), 401, "UNAUTHORIZED")


def test_a_break_is_resolved_once_by_credit_or_ignore(client, sessions, make_customer, admin_h) -> None:  # type: ignore[no-untyped-def]
    alice = make_customer()
    body, _ = statement("csv")
    imported = post(client, admin_h, body, "text/csv").json["id"]
    url = f"{API}/{imported}/lines"

    credited = client.post(
        f"{url}/4/resolve", json={"action": "credit", "account_id": str(alice.account.id)}, headers=admin_h
    )
    assert credited.status_code == 200, credited.json
    assert credited.json["status"] == "RESOLVED" and credited.json["resolution"]["action"] == "credit"
    assert factories.balance(sessions, alice.account.id) == UNKNOWN_CREDIT
    again = client.post(f"{url}/4/resolve", json={"action": "ignore", "reason": "twice"}, headers=admin_h)
    assert_problem(again, 409, "CONFLICT")
    assert factories.balance(sessions, alice.account.id) == UNKNOWN_CREDIT

    ignored = client.post(
        f"{url}/1/resolve", json={"action": "ignore", "reason": "bank fee, booked by hand"}, headers=admin_h
    )
    assert ignored.status_code == 200 and ignored.json["resolution"]["reason"] == "bank fee, booked by hand"
    # A debit cannot be credited to a customer; a line that does not exist is 404.
    r = client.post(f"{url}/2/resolve", json={"action": "credit", "account_id": str(alice.account.id)}, headers=admin_h)
    assert r.status_code == 200  # line 2 is a credit (an unknown return): it may be credited
    assert_problem(
        client.post(f"{url}/9/resolve", json={"action": "ignore", "reason": "x"}, headers=admin_h), 404, "NOT_FOUND"
    )
    got = client.get(f"{API}/{imported}", headers=admin_h).json
    assert (got["matched"], got["unmatched"], got["resolved"]) == (0, 1, 3)
    with sessions() as s:
        mine = AuditLog.details["import_id"].astext == imported
        rows = s.scalars(select(AuditLog).where(AuditLog.action == "reconciliation.line_resolved", mine)).all()
        assert sorted(a.details["action"] for a in rows) == ["credit", "credit", "ignore"]
        assert all(
            set(a.details)
            == {"import_id", "line", "action", "account_id", "transfer_id", "reason", "amount", "currency"}
            for a in rows
        )
        assert s.scalar(select(func.sum(LedgerEntry.amount))) == 0
        assert reconcile(s).ok


def test_a_debit_break_cannot_be_credited(client, sessions, make_customer, admin_h) -> None:  # type: ignore[no-untyped-def]
    alice = make_customer()
    imported = post(client, admin_h, statement("csv")[0], "text/csv").json["id"]
    r = client.post(
        f"{API}/{imported}/lines/1/resolve",
        json={"action": "credit", "account_id": str(alice.account.id)},
        headers=admin_h,
    )
    assert "action" in assert_problem(r, 422, "VALIDATION_ERROR")["errors"]


@pytest.mark.parametrize(
    "body",
    [
        {"action": "credit"},
        {"action": "ignore"},
        {"action": "ignore", "reason": ""},
        {"action": "credit", "account_id": str(uuid.uuid4()), "reason": "x"},
        {"action": "refund", "reason": "x"},
        {"action": "ignore", "reason": "x", "extra": 1},
    ],
)
def test_a_bad_resolution_is_422(client, admin_h, body: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    imported = post(client, admin_h, statement("csv")[0], "text/csv").json["id"]
    assert_problem(
        client.post(f"{API}/{imported}/lines/4/resolve", json=body, headers=admin_h), 422, "VALIDATION_ERROR"
    )


def test_crediting_another_currency_or_a_missing_account_changes_nothing(
    client, sessions, make_customer, admin_h
) -> None:  # type: ignore[no-untyped-def]
    euro = make_customer(currency="EUR")
    imported = post(client, admin_h, statement("csv")[0], "text/csv").json["id"]
    url = f"{API}/{imported}/lines/4/resolve"
    assert_problem(
        client.post(url, json={"action": "credit", "account_id": str(euro.account.id)}, headers=admin_h),
        422,
        "CURRENCY_MISMATCH",
    )
    assert_problem(
        client.post(url, json={"action": "credit", "account_id": str(uuid.uuid4())}, headers=admin_h), 404, "NOT_FOUND"
    )
    assert client.get(f"{API}/{imported}", headers=admin_h).json["items"][3]["status"] == "UNMATCHED"


def test_an_inbound_credit_to_a_frozen_account_stays_a_break(client, sessions, make_customer, admin_h) -> None:  # type: ignore[no-untyped-def]
    alice = make_customer()
    r = client.post(f"/api/v1/admin/accounts/{alice.account.id}/freeze", json={"reason": "test"}, headers=admin_h)
    assert r.status_code == 200
    imported = post(client, admin_h, statement("csv", inbound=inbound_reference.of(alice.account.id))[0], "text/csv")
    assert imported.status_code == 201 and imported.json["matched"] == 0
    assert factories.balance(sessions, alice.account.id) == 0
    with sessions() as s:
        alices = AuditLog.details["account_id"].astext == str(alice.account.id)
        refused = s.scalars(select(AuditLog).where(AuditLog.action == "reconciliation.line_unmatched", alices)).one()
        assert refused.details["refused"] == "ACCOUNT_INACTIVE"


def test_a_mistyped_inbound_reference_names_nobody() -> None:
    account_id = uuid.uuid4()
    code = inbound_reference.of(account_id)
    assert inbound_reference.account_named(f"rent {code[:2]} {code[2:].lower()}") == account_id
    typo = code[:10] + ("A" if code[10] != "A" else "B") + code[11:]
    assert inbound_reference.account_named(typo) is None
    assert inbound_reference.account_named(None) is None


@pytest.mark.commits  # each import commits on a connection of its own, racing the others
def test_overlapping_files_imported_at_once_credit_once(committed_sessions, settings, admin_user) -> None:  # type: ignore[no-untyped-def]
    import threading

    from core.errors import Conflict
    from core.reconciliation import imports
    from core.reconciliation.own_account import OwnAccount

    alice = factories.customer(committed_sessions, settings)
    ref = f"CORR{uuid.uuid4().hex[:8]}"
    shared = f"2026-12-01,{INBOUND},USD,{ref}-shared {inbound_reference.of(alice.account.id)},,Jane Payer\n"
    header = "booking_date,amount,currency,reference,end_to_end_id,counterparty\n"
    # Six files share the inbound credit, each with a line of its own; two more are the same file.
    files = [f"{header}{shared}2026-12-01,{n + 1},USD,{ref}-own-{n},,\n".encode() for n in range(6)]
    files += [files[0]]
    barrier = threading.Barrier(len(files))
    outcomes: list[str] = []

    def run(body: bytes) -> None:
        barrier.wait()
        try:
            with committed_sessions.begin() as s:
                done = imports.import_statement(
                    s,
                    body=body,
                    media_type="text/csv",
                    own_account=OwnAccount(settings.payout_debtor_iban, settings.payout_debtor_account_number),
                    actor_id=admin_user.id,
                    request_id=None,
                )
            outcomes.append(f"{done.matched}/{done.already_imported}")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=run, args=(body,)) for body in files]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) == sorted(["1/0"] + ["0/1"] * 5 + ["conflict"]), outcomes
    assert factories.balance(committed_sessions, alice.account.id) == INBOUND


def test_a_line_number_past_any_line_is_404(client, admin_h) -> None:  # type: ignore[no-untyped-def]
    imported = post(client, admin_h, statement("csv")[0], "text/csv").json["id"]
    for line in (0, 2**31, 7595804281):
        r = client.post(
            f"{API}/{imported}/lines/{line}/resolve", json={"action": "ignore", "reason": "x"}, headers=admin_h
        )
        assert_problem(r, 404, "NOT_FOUND")


@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded", None])
def test_a_statement_of_another_type_is_415_and_writes_nothing(client, sessions, admin_h, content_type) -> None:  # type: ignore[no-untyped-def]
    body, _ = statement("csv")
    before = _count(sessions, ReconciliationImport)
    headers = {**admin_h, **({"Content-Type": content_type} if content_type else {})}
    assert_problem(client.post(API, data=body, headers=headers), 415, "UNSUPPORTED_MEDIA_TYPE")
    assert _count(sessions, ReconciliationImport) == before
