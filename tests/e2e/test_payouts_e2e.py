"""A payout end to end: gunicorn API, Celery workers settling its transfer, an admin's pain.001
file, and payout.sent delivered to the customer's webhook endpoint."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree
from standardwebhooks import Webhook

from core.accounts.service import in_transit_account_id
from core.models import Account
from tests import factories
from tests.e2e.conftest import bearer, wait_final
from tests.receiver import Receiver, running

pytestmark = pytest.mark.e2e

XSD = Path(__file__).resolve().parents[1] / "fixtures" / "iso20022" / "pain.001.001.03.xsd"
NS = {"p": "urn:iso:std:iso:20022:tech:xsd:pain.001.001.03"}
CURRENCY = "HUF"  # no other test pays out in it: the file holds this test's payouts only


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    yield from running()


def payout(http: httpx.Client, h: dict[str, str], source: uuid.UUID, to: str, amount: int) -> dict[str, Any]:
    body = {
        "source_account_id": str(source),
        "counterparty_id": to,
        "amount": amount,
        "currency": CURRENCY,
        "pin": factories.PIN,
        "reference": "invoice 7",
    }
    r = http.post("/payouts", json=body, headers={**h, "Idempotency-Key": str(uuid.uuid4())})
    assert r.status_code == 202, r.text
    return r.json()  # type: ignore[no-any-return]


def test_the_worker_settles_a_payout_and_a_file_sends_it(http, sessions, settings, admin_user, receiver) -> None:  # type: ignore[no-untyped-def]
    alice = factories.customer(sessions, settings, currency=CURRENCY)
    factories.fund(sessions, admin_user, alice.account, 50_000)
    h = bearer(http, alice.email)
    url = receiver.endpoint()
    r = http.post("/webhooks/endpoints", json={"url": url, "events": ["payout.sent"]}, headers=h)
    assert r.status_code == 201, r.text
    secret = r.json()["secret"]
    r = http.post(
        "/counterparties",
        json={"name": "Supplier Kft", "currency": CURRENCY, "iban": "HU42117730161111101800000000"},
        headers=h,
    )
    assert r.status_code == 201, r.text
    to = r.json()["id"]
    with sessions.begin() as s:
        in_transit = in_transit_account_id(s, CURRENCY)
        before = s.get_one(Account, in_transit).balance

    paid = payout(http, h, alice.account.id, to, 20_000)
    too_much = payout(http, h, alice.account.id, to, 40_000)  # more than is left once the first settles
    finals = wait_final(sessions, [uuid.UUID(paid["transfer_id"]), uuid.UUID(too_much["transfer_id"])])
    assert finals[uuid.UUID(paid["transfer_id"])].status.value == "COMPLETED"
    assert http.get(f"/payouts/{paid['id']}", headers=h).json()["status"] == "PENDING"
    failed = http.get(f"/payouts/{too_much['id']}", headers=h).json()
    assert (failed["status"], failed["failure_code"]) == ("FAILED", "INSUFFICIENT_FUNDS")
    assert http.get(f"/accounts/{alice.account.id}", headers=h).json()["balance"] == 30_000
    with sessions() as s:
        assert s.get_one(Account, in_transit).balance == before + 20_000

    admin = bearer(http, admin_user.email)
    made = http.post("/admin/payout-files", json={"currency": CURRENCY}, headers=admin)
    assert made.status_code == 201, made.text
    assert (made.json()["payouts"], made.json()["total"]) == (1, 20_000)
    sent = http.get(f"/payouts/{paid['id']}", headers=h).json()
    assert (sent["status"], sent["file_id"]) == ("SENT", made.json()["id"])
    download = http.get(f"/admin/payout-files/{made.json()['id']}", headers=admin)
    assert download.status_code == 200 and download.headers["Content-Type"].startswith("application/xml")
    doc = etree.fromstring(download.content)
    assert etree.XMLSchema(etree.parse(str(XSD))).validate(doc)
    assert doc.xpath("//p:EndToEndId/text()", namespaces=NS) == [paid["end_to_end_id"]]
    assert doc.findtext(".//p:InstdAmt", namespaces=NS) == "200.00"
    again = http.post("/admin/payout-files", json={"currency": CURRENCY}, headers=admin)
    assert again.status_code == 409 and again.json()["code"] == "CONFLICT"

    (delivery,) = receiver.wait(url, 1)
    event = Webhook(secret).verify(delivery.body, delivery.headers)
    assert event["type"] == "payout.sent"
    assert event["data"]["id"] == paid["id"] and event["data"]["status"] == "SENT"
