"""The console's Reconciliation page (issue 25): an imported statement's lines, and the resolve form
(CSRF, the API's ResolveIn schema, core/reconciliation/resolve.py like the API)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from core.models import AuditLog, User
from core.reconciliation.models import LineStatus, ReconciliationLine
from tests import factories
from tests.integration.test_api import login
from tests.integration.test_console import console_login, token_from
from tests.integration.test_reconciliations import UNKNOWN_CREDIT, post, statement

SCRIPT = "<script>alert(1)</script>"


@pytest.fixture
def admin(sessions) -> User:  # type: ignore[no-untyped-def]
    return factories.admin(sessions)


@pytest.fixture
def console(client, admin):  # type: ignore[no-untyped-def]
    assert console_login(client, admin.email).status_code == 302
    return client


def _import(client: Any, admin_user: Any, **values: str) -> str:
    r = post(client, login(client, admin_user.email), statement("csv", **values)[0], "text/csv")
    assert r.status_code == 201, r.json
    return str(r.json["id"])


def _line(sessions: Any, import_id: str, number: int) -> ReconciliationLine:
    with sessions() as s:
        return s.scalars(
            select(ReconciliationLine).where(
                ReconciliationLine.import_id == uuid.UUID(import_id), ReconciliationLine.line == number
            )
        ).one()


def test_the_page_lists_lines_with_a_resolve_form_per_break(console, admin, sessions) -> None:  # type: ignore[no-untyped-def]
    import_id = _import(console, admin)
    listing = console.get("/console/reconciliations")
    assert listing.status_code == 200 and import_id in listing.text
    page = console.get(f"/console/reconciliations/{import_id}")
    assert page.status_code == 200
    forms = re.findall(r'<form method="post" action="([^"]+/resolve)">', page.text)
    assert len(forms) == 4  # every line of a statement naming no payout nor customer is a break
    assert page.text.count('data-action="resolve"') == 4
    assert page.text.count('name="csrf_token"') >= 4


def test_ignoring_a_line_through_the_console(console, admin, sessions) -> None:  # type: ignore[no-untyped-def]
    import_id = _import(console, admin)
    path = f"/console/reconciliations/{import_id}"
    r = console.post(
        f"{path}/lines/1/resolve",
        data={"action": "ignore", "reason": "bank fee", "account_id": "", "csrf_token": token_from(console, path)},
    )
    assert r.status_code == 302, r.text
    line = _line(sessions, import_id, 1)
    assert line.status == LineStatus.RESOLVED and line.reason == "bank fee" and line.resolved_by == admin.id
    with sessions() as s:
        row = s.scalars(
            select(AuditLog).where(
                AuditLog.action == "reconciliation.line_resolved", AuditLog.entity_id == str(line.id)
            )
        ).one()
        assert row.actor_id == admin.id
    page = console.get(path).text
    assert page.count('data-action="resolve"') == 3 and "Line 1 resolved." in page


def test_crediting_a_line_through_the_console(console, admin, make_customer, sessions) -> None:  # type: ignore[no-untyped-def]
    alice = make_customer()
    import_id = _import(console, admin)
    path = f"/console/reconciliations/{import_id}"
    r = console.post(
        f"{path}/lines/4/resolve",
        data={"action": "credit", "account_id": str(alice.account.id), "csrf_token": token_from(console, path)},
    )
    assert r.status_code == 302, r.text
    assert factories.balance(sessions, alice.account.id) == UNKNOWN_CREDIT
    # Twice: the service's 409 is shown as a message, nothing moves again.
    r = console.post(
        f"{path}/lines/4/resolve",
        data={"action": "credit", "account_id": str(alice.account.id), "csrf_token": token_from(console, path)},
    )
    assert "already RESOLVED" in console.get(path).text
    assert factories.balance(sessions, alice.account.id) == UNKNOWN_CREDIT


def test_a_resolution_without_its_token_is_refused(console, admin, sessions) -> None:  # type: ignore[no-untyped-def]
    import_id = _import(console, admin)
    r = console.post(f"/console/reconciliations/{import_id}/lines/1/resolve", data={"action": "ignore", "reason": "x"})
    assert r.status_code == 400
    assert _line(sessions, import_id, 1).status == LineStatus.UNMATCHED


def test_the_schema_error_is_shown_next_to_the_field(console, admin, sessions) -> None:  # type: ignore[no-untyped-def]
    import_id = _import(console, admin)
    path = f"/console/reconciliations/{import_id}"
    r = console.post(
        f"{path}/lines/2/resolve", data={"action": "credit", "reason": "", "csrf_token": token_from(console, path)}
    )
    assert r.status_code == 422
    assert re.search(r'id="account_id-2-error">Required with action credit\.<', r.text), r.text
    assert _line(sessions, import_id, 2).status == LineStatus.UNMATCHED


def test_stored_html_in_a_statement_and_a_reason_is_inert(console, admin, sessions) -> None:  # type: ignore[no-untyped-def]
    # A CSV field may hold anything the bank (or whoever forged the file) wrote.
    import_id = _import(console, admin, ref=SCRIPT, inbound="x")
    path = f"/console/reconciliations/{import_id}"
    console.post(
        f"{path}/lines/1/resolve", data={"action": "ignore", "reason": SCRIPT, "csrf_token": token_from(console, path)}
    )
    page = console.get(path).text
    assert SCRIPT not in page and "&lt;script&gt;" in page


def test_a_customer_session_or_token_cannot_reach_it(client, admin, make_customer) -> None:  # type: ignore[no-untyped-def]
    import_id = _import(client, admin)
    alice = make_customer()
    r = client.get(f"/console/reconciliations/{import_id}", headers=login(client, alice.email))
    assert r.status_code == 302 and "/console/login" in r.headers["Location"]
