"""The console's Reconciliation page in a real browser (issue 25), against gunicorn: a statement
imported over the API, its breaks listed, one credited to a customer and one ignored through the
resolve forms (their hidden CSRF tokens travel with them), a form stripped of its token refused.
Every page is checked for CSP violations and outside resources; screenshots in the run's log dir."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from core.reconciliation.models import LineStatus, ReconciliationLine
from tests import factories
from tests.e2e.test_console_browser import Console, browser, pytestmark  # noqa: F401  (fixture, skip without a browser)
from tests.integration.test_reconciliations import UNKNOWN_CREDIT, statement
from tests.waits import wait_for


def _status(sessions: Any, import_id: str, line: int) -> LineStatus:
    with sessions() as s:
        return s.scalars(
            select(ReconciliationLine.status).where(
                ReconciliationLine.import_id == uuid.UUID(import_id), ReconciliationLine.line == line
            )
        ).one()


def test_resolving_breaks_in_a_browser(browser, api_url: str, committed_sessions, log_dir: Path, settings) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    from selenium.webdriver.common.by import By

    sessions = committed_sessions
    admin = factories.admin(sessions)
    payee = factories.customer(sessions, settings)
    body, media_type = statement("csv")
    with httpx.Client(base_url=f"{api_url}/api/v1", timeout=30) as http:
        token = http.post("/auth/login", json={"email": admin.email, "password": factories.PASSWORD}).json()
        r = http.post(
            "/admin/reconciliations",
            content=body,
            headers={"Authorization": f"Bearer {token['access_token']}", "Content-Type": media_type},
        )
    assert r.status_code == 201, r.text
    import_id = r.json()["id"]

    console = Console(browser, api_url, log_dir / "console-screenshots")
    console.log_in(admin.email)
    wait_for("the overview", lambda: "/console/login" not in browser.current_url, 15)
    console.open("/console/reconciliations")
    console.find(f"a[href='/console/reconciliations/{import_id}']").click()
    console.check_page()
    assert len(browser.find_elements(By.CSS_SELECTOR, "button[data-action=resolve]")) == 4
    console.shot("reconciliation")

    # Line 4, a credit naming nobody: credited to the payee's account.
    console.find("#action-4-credit").click()
    console.find("#account_id-4").send_keys(str(payee.account.id))
    console.find("button[data-action=resolve][aria-label='Resolve line 4']").click()
    wait_for("the credit", lambda: _status(sessions, import_id, 4) == LineStatus.RESOLVED, 15)
    console.check_page()
    assert factories.balance(sessions, payee.account.id) == UNKNOWN_CREDIT

    # Line 1, a debit naming no payout: ignored with a reason.
    console.find("#reason-1").send_keys("booked by hand")
    console.find("button[data-action=resolve][aria-label='Resolve line 1']").click()
    wait_for("the ignore", lambda: _status(sessions, import_id, 1) == LineStatus.RESOLVED, 15)
    console.check_page()
    assert len(browser.find_elements(By.CSS_SELECTOR, "button[data-action=resolve]")) == 2
    console.shot("reconciliation-resolved")

    # Without its CSRF token the form is refused and the line stays a break.
    browser.execute_script("document.querySelectorAll('input[name=csrf_token]').forEach(e => e.remove())")
    console.find("#reason-2").send_keys("no token")
    console.find("button[data-action=resolve][aria-label='Resolve line 2']").click()
    wait_for("the refusal", lambda: "Form expired" in browser.page_source, 15)
    assert _status(sessions, import_id, 2) == LineStatus.UNMATCHED
