"""The operators' console in a real browser: Debian's chromium driven by Selenium through the
installed chromedriver (nothing is downloaded at test time), against the app served by gunicorn.

An admin logs in, approves a customer's KYC in the queue, freezes an account (and a transfer to it
is then refused by the API), opens a transfer whose audit proof the page's own script walks to the
root, and a form stripped of its CSRF token is refused. On every page the CSP reports no violation
and nothing is loaded from another origin. Each step leaves a screenshot in the run's log dir.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from core.config import Settings
from core.models import Account, AccountStatus, KycStatus, Transfer, User
from core.webhooks.models import DeliveryStatus, WebhookDelivery
from tests import factories
from tests.waits import wait_for

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="the console's browser test needs Debian's chromium and chromium-driver "
    "(apt-get install chromium chromium-driver; .ci/run installs them)",
)

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.add_argument("--window-size=1366,900")  # a laptop screen
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


class Console:
    """The browser on the console, checking each page it opens."""

    def __init__(self, driver: Any, base: str, shots: Path) -> None:
        self.driver, self.base, self.shots = driver, base, shots
        self.shots.mkdir(parents=True, exist_ok=True)

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)
        self.check_page()

    def check_page(self) -> None:
        log = self.driver.get_log("browser")
        violations = [e for e in log if e.get("source") == "security" or "Content Security Policy" in e["message"]]
        assert violations == [], violations
        resources = self.driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
        )  # fmt: skip
        assert all(url.startswith(self.base + "/") for url in resources), resources  # nothing from elsewhere

    def log_in(self, email: str) -> None:
        self.open("/console/login")
        self.find("input[name=email]").send_keys(email)
        self.find("input[name=password]").send_keys(factories.PASSWORD)
        self.find("button[data-action=login]").click()

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def shot(self, name: str) -> None:
        self.driver.save_screenshot(str(self.shots / f"{name}.png"))


def test_console_in_a_browser(browser, api_url: str, committed_sessions, log_dir: Path, settings) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    sessions = committed_sessions
    admin = factories.admin(sessions)
    pending = factories.customer(sessions, settings, approved=False, pin=None)
    payer = factories.customer(sessions, settings)
    payee = factories.customer(sessions, settings)
    factories.fund(sessions, admin, payer.account, 5000)
    factories.seal_all(sessions)
    console = Console(browser, api_url, log_dir / "console-screenshots")

    # A customer's right password opens nothing.
    console.log_in(payer.email)
    wait_for("the refusal", lambda: "administrators only" in browser.page_source, 15)
    console.open("/console/")
    assert "/console/login" in browser.current_url

    # Log in through the form (the hidden CSRF token travels with it).
    console.log_in(admin.email)
    wait_for("the overview", lambda: "/console/login" not in browser.current_url, 15)
    console.check_page()
    assert console.find("#backlog").text.isdigit()
    console.shot("overview")

    # Work the KYC queue: the pending customer's row, approved with its button.
    console.open("/console/kyc")
    row = console.find(f"tr[data-user-id='{pending.user.id}']")
    assert pending.email in row.text
    console.shot("kyc-queue")
    row.find_element(By.CSS_SELECTOR, "button[data-action=approve]").click()
    wait_for("the KYC decision", lambda: _kyc(sessions, pending.user.id) == KycStatus.APPROVED, 15)
    console.check_page()

    # Freeze the payee's account; the API then refuses a transfer to it.
    console.open(f"/console/accounts/{payee.account.id}")
    console.find("#reason").send_keys("compliance review")
    console.find("button[data-action=freeze]").click()
    wait_for("the freeze", lambda: _status(sessions, payee.account.id) == AccountStatus.FROZEN, 15)
    console.check_page()
    assert console.find("#account-status").text == "FROZEN"
    console.shot("account-frozen")
    with httpx.Client(base_url=f"{api_url}/api/v1", timeout=30) as http:
        login = http.post("/auth/login", json={"email": payer.email, "password": factories.PASSWORD})
        r = http.post(
            "/transfers",
            json={"source_account_id": str(payer.account.id), "destination_account_id": str(payee.account.id),
                  "amount": 100, "currency": "USD", "pin": factories.PIN},
            headers={"Authorization": f"Bearer {login.json()['access_token']}", "Idempotency-Key": str(uuid.uuid4())},
        )  # fmt: skip
    assert r.status_code == 404, r.text  # a frozen destination cannot receive

    # Find the funding transfer and let the page's script walk each audit proof to its root.
    with sessions() as s:
        deposit_id = s.scalar(
            select(Transfer.id).where(Transfer.destination_account_id == payer.account.id).order_by(Transfer.created_at)
        )
    console.open(f"/console/search?q={payer.account.id}")
    console.find(f"a[href='/console/transfers/{deposit_id}']").click()
    wait_for("the proofs checked in the browser", lambda: _proofs_checked(console), 15)
    assert all(c.get_attribute("data-verified") == "true" for c in browser.find_elements(By.CSS_SELECTOR, "td.proof"))
    console.check_page()
    console.shot("transfer")

    # Retry a delivery that was given up.
    delivery_id, endpoint_id = _failed_delivery(sessions, admin, payer)
    console.open(f"/console/webhooks/{endpoint_id}")
    console.find(f"button[data-action=retry][aria-label='Retry delivery {delivery_id}']").click()
    wait_for("the retry", lambda: "queued for another attempt" in browser.page_source, 15)
    console.check_page()
    with sessions() as s:
        assert s.get_one(WebhookDelivery, delivery_id).status == DeliveryStatus.PENDING
    console.shot("delivery-retried")

    # A form whose CSRF token is removed is refused, and changes nothing.
    console.open(f"/console/accounts/{payee.account.id}")
    browser.execute_script("document.querySelectorAll('input[name=csrf_token]').forEach(e => e.remove())")
    console.find("#reason").send_keys("no token")
    console.find("button[data-action=unfreeze]").click()
    wait_for("the refusal", lambda: "Form expired" in browser.page_source, 15)
    assert _status(sessions, payee.account.id) == AccountStatus.FROZEN
    console.shot("csrf-refused")


def _kyc(sessions, user_id: uuid.UUID) -> KycStatus:  # type: ignore[no-untyped-def]
    with sessions() as s:
        return s.get_one(User, user_id).kyc_status


def _status(sessions, account_id: uuid.UUID) -> AccountStatus:  # type: ignore[no-untyped-def]
    with sessions() as s:
        return s.get_one(Account, account_id).status


def _proofs_checked(console: Console) -> bool:
    from selenium.webdriver.common.by import By

    cells = console.driver.find_elements(By.CSS_SELECTOR, "td.proof")
    return bool(cells) and all(c.get_attribute("data-verified") in ("true", "false") for c in cells)


def _failed_delivery(sessions, admin: User, customer: Any) -> tuple[uuid.UUID, uuid.UUID]:  # type: ignore[no-untyped-def]
    """A delivery to ``customer``'s endpoint, given up (no worker runs here: the test plays the relay)."""
    from core.resources import Policies
    from core.webhooks import relay, service

    policy = Policies.from_settings(Settings()).webhooks
    with sessions.begin() as s:
        created = service.create_endpoint(
            s, s.get_one(User, customer.user.id), url="https://hooks.example.com/bank", events=["transfer.completed"],
            description=None, policy=policy, resolve=lambda host, port: ["93.184.216.34"],
        )  # fmt: skip
    factories.fund(sessions, admin, customer.account, 10)
    with sessions.begin() as s:
        relay.relay_events(s, now=datetime.now(UTC) + timedelta(seconds=1), queue_lease=timedelta(seconds=30))
    with sessions.begin() as s:
        delivery = s.scalars(select(WebhookDelivery).where(WebhookDelivery.endpoint_id == created.endpoint.id)).one()
        delivery.status, delivery.queued_until, delivery.next_attempt_at = DeliveryStatus.FAILED, None, None
        return delivery.id, created.endpoint.id
