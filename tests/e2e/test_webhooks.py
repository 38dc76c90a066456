"""Partner webhooks end to end: gunicorn API, two Celery workers (beat in w1: relay + dispatcher),
and a real receiver on 127.0.0.1. The workers run with WEBHOOK_RETRY_SCHEDULE=1,1,1 (4 attempts).
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from standardwebhooks import Webhook

from core.events import DomainEvent, EventType, emit
from core.webhooks.models import WebhookDelivery
from tests import factories
from tests.e2e.conftest import bearer, wait_final
from tests.receiver import Receiver, Reply, running
from tests.waits import wait_for

pytestmark = pytest.mark.e2e

ATTEMPTS = 4  # 1 + len("1,1,1")


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    yield from running()


def register(http: httpx.Client, headers: dict[str, str], url: str, events: list[str]) -> dict[str, Any]:
    r = http.post("/webhooks/endpoints", json={"url": url, "events": events}, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def deliveries(http: httpx.Client, headers: dict[str, str], endpoint_id: str) -> list[dict[str, Any]]:
    r = http.get(f"/webhooks/endpoints/{endpoint_id}/deliveries", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["items"]  # type: ignore[no-any-return]


def poll(what: str, check: Callable[[], Any], timeout: float = 30) -> Any:
    return wait_for(what, check, timeout)


def verified(secret: str, req: Any) -> dict[str, Any]:
    return Webhook(secret).verify(req.body, req.headers)  # type: ignore[no-any-return]


def test_a_completed_transfer_reaches_sender_and_receiver_signed(  # type: ignore[no-untyped-def]
    http, sessions, settings, admin_user, receiver
) -> None:
    alice, bob, carol = (factories.customer(sessions, settings) for _ in range(3))
    factories.fund(sessions, admin_user, alice.account, 1000)  # before the endpoints: not for them
    ha, hb, hc = (bearer(http, c.email) for c in (alice, bob, carol))
    a_url, b_url, c_url = receiver.endpoint(), receiver.endpoint(), receiver.endpoint()
    a_ep = register(http, ha, a_url, ["transfer.completed"])
    b_ep = register(http, hb, b_url, ["account.credited"])
    register(http, hc, c_url, [e.value for e in EventType])  # carol is not part of the transfer

    r = http.post(
        "/transfers",
        json={
            "source_account_id": str(alice.account.id),
            "destination_account_id": str(bob.account.id),
            "amount": 250,
            "currency": "USD",
            "pin": factories.PIN,
            "reference": "order 7",
        },
        headers={**ha, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert r.status_code == 202, r.text
    tid = r.json()["id"]
    wait_final(sessions, [uuid.UUID(tid)])

    (to_alice,) = receiver.wait(a_url, 1)
    sent = verified(a_ep["secret"], to_alice)
    assert sent["type"] == "transfer.completed"
    assert sent["data"]["id"] == tid and sent["data"]["status"] == "COMPLETED" and sent["data"]["amount"] == 250
    assert sent["data"]["reference"] == "order 7" and sent["data"]["updated_at"]
    assert isinstance(sent["data"]["sequence"], int)

    (to_bob,) = receiver.wait(b_url, 1)
    credited = verified(b_ep["secret"], to_bob)
    assert credited["type"] == "account.credited" and credited["data"]["id"] == tid
    assert credited["data"]["account_id"] == str(bob.account.id) and credited["data"]["balance_after"] == 250
    with pytest.raises(Exception, match="signature"):
        verified(a_ep["secret"], to_bob)  # each endpoint has its own secret

    # The relay has long passed these events: nothing more is coming, to anyone.
    time.sleep(1.5)
    assert len(receiver.requests(a_url)) == 1 and len(receiver.requests(b_url)) == 1
    assert receiver.requests(c_url) == []
    (d,) = poll(
        "alice's delivery recorded", lambda: [x for x in deliveries(http, ha, a_ep["id"]) if x["status"] == "SUCCEEDED"]
    )
    assert (d["event_type"], d["attempt"], d["response_status"], d["next_attempt_at"]) == (
        "transfer.completed",
        1,
        200,
        None,
    )


def test_two_failures_then_success_is_three_attempts_of_one_message(  # type: ignore[no-untyped-def]
    http, workers, sessions, settings, admin_user, receiver
) -> None:
    bob = factories.customer(sessions, settings)
    hb = bearer(http, bob.email)
    url = receiver.endpoint(500, 500, then=200)
    ep = register(http, hb, url, ["account.credited"])
    factories.fund(sessions, admin_user, bob.account, 500)

    got = receiver.wait(url, 3)
    assert len({r.headers["Webhook-Id"] for r in got}) == 1  # the same message, retried
    assert all(verified(ep["secret"], r)["data"]["balance_after"] == 500 for r in got)
    assert all(b.at - a.at >= 0.9 for a, b in itertools.pairwise(got))  # backoff, not a hot loop
    (d,) = poll("delivery SUCCEEDED", lambda: [x for x in deliveries(http, hb, ep["id"]) if x["status"] == "SUCCEEDED"])
    assert (d["attempt"], d["response_status"]) == (3, 200)
    assert len(receiver.requests(url)) == 3
    # Each attempt counted for its endpoint: what WebhookFailureRateHigh alerts on, per endpoint.
    poll("attempts counted per endpoint", lambda: attempts_by_result(workers, ep["id"]) == {"error": 2, "ok": 1}, 15)


def attempts_by_result(workers: list[Any], endpoint_id: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    for w in workers:
        for family in text_string_to_metric_families(httpx.get(w.metrics_url, timeout=10).text):
            for sample in family.samples:
                if sample.name == "bank_webhook_attempts_total" and sample.labels["endpoint_id"] == endpoint_id:
                    result = sample.labels["result"]
                    counts[result] = counts.get(result, 0) + sample.value
    return counts


def test_a_receiver_down_for_good_fails_then_a_manual_retry_succeeds(  # type: ignore[no-untyped-def]
    http, sessions, settings, admin_user, receiver
) -> None:
    bob, mallory = factories.customer(sessions, settings), factories.customer(sessions, settings)
    hb, hm = bearer(http, bob.email), bearer(http, mallory.email)
    url = receiver.endpoint(then=503)
    ep = register(http, hb, url, ["account.credited"])
    factories.fund(sessions, admin_user, bob.account, 100)

    (d,) = poll("delivery FAILED", lambda: [x for x in deliveries(http, hb, ep["id"]) if x["status"] == "FAILED"])
    assert (d["attempt"], d["response_status"], d["next_attempt_at"]) == (ATTEMPTS, 503, None)
    time.sleep(1.5)
    assert len(receiver.requests(url)) == ATTEMPTS  # and then it stopped

    # Another user can neither see nor retry it.
    assert http.get(f"/webhooks/endpoints/{ep['id']}/deliveries", headers=hm).status_code == 404
    assert http.post(f"/webhooks/deliveries/{d['id']}/retry", headers=hm).status_code == 404

    receiver.answer_from_now_on(url, 200)
    r = http.post(f"/webhooks/deliveries/{d['id']}/retry", headers=hb)
    assert r.status_code == 202, r.text
    (done,) = poll(
        "retried delivery SUCCEEDED", lambda: [x for x in deliveries(http, hb, ep["id"]) if x["status"] == "SUCCEEDED"]
    )
    assert (done["id"], done["attempt"], done["response_status"]) == (d["id"], ATTEMPTS + 1, 200)
    got = receiver.requests(url)
    assert len(got) == ATTEMPTS + 1 and len({g.headers["Webhook-Id"] for g in got}) == 1
    verified(ep["secret"], got[-1])


def test_after_a_rotation_both_secrets_verify_during_the_grace_period(  # type: ignore[no-untyped-def]
    http, sessions, settings, admin_user, receiver
) -> None:
    bob = factories.customer(sessions, settings)
    hb = bearer(http, bob.email)
    url = receiver.endpoint()
    ep = register(http, hb, url, ["account.credited"])
    r = http.post(f"/webhooks/endpoints/{ep['id']}/rotate-secret", headers=hb)
    assert r.status_code == 200, r.text
    new = r.json()["secret"]
    assert new != ep["secret"] and "secret" not in http.get(f"/webhooks/endpoints/{ep['id']}", headers=hb).json()
    factories.fund(sessions, admin_user, bob.account, 100)

    (req,) = receiver.wait(url, 1)
    signatures = req.headers["Webhook-Signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    assert verified(new, req) == verified(ep["secret"], req)


def test_nothing_is_lost_between_the_outbox_write_and_the_delivery(  # type: ignore[no-untyped-def]
    http, sessions, settings, receiver
) -> None:
    carol = factories.customer(sessions, settings)
    hc = bearer(http, carol.email)
    url = receiver.endpoint()
    ep = register(http, hc, url, ["account.credited", "transfer.completed"])

    # A process committed its change and outbox row, then died before publishing anything.
    with sessions.begin() as s:
        event = emit(s, EventType.ACCOUNT_CREDITED, {"id": "crashed-1"}, [carol.user.id])
        assert event is not None
    # A delivery whose task was lost with its worker: queued long ago, never attempted.
    with sessions.begin() as s:
        lost = DomainEvent(
            event_type=EventType.TRANSFER_COMPLETED,
            data={"id": "lost-task-1"},
            owner_ids=[carol.user.id],
            relayed_at=datetime.now(UTC),
        )
        s.add(lost)
        s.flush()
        now = datetime.now(UTC)
        s.add(
            WebhookDelivery(
                event_id=lost.id,
                endpoint_id=uuid.UUID(ep["id"]),
                event_type=EventType.TRANSFER_COMPLETED,
                next_attempt_at=now,
                queued_until=now,
            )
        )

    got = receiver.wait(url, 2)
    assert sorted(verified(ep["secret"], r)["data"]["id"] for r in got) == ["crashed-1", "lost-task-1"]


def test_a_slow_endpoint_does_not_starve_another_partners_deliveries(  # type: ignore[no-untyped-def]
    http, sessions, settings, admin_user, receiver
) -> None:
    """A partner whose receiver takes 3 s per request, with a backlog of 12 events, holds one
    worker process at a time (WEBHOOK_ENDPOINT_CONCURRENCY=1): another partner's event, relayed
    right behind that backlog, is delivered in seconds, not after the backlog (about 9 s on the
    4 worker processes when every delivery took a process)."""
    slow_owner, fast_owner = factories.customer(sessions, settings), factories.customer(sessions, settings)
    slow_url = receiver.endpoint(then=Reply(200, delay=3))
    fast_url = receiver.endpoint()
    register(http, bearer(http, slow_owner.email), slow_url, ["account.credited"])
    register(http, bearer(http, fast_owner.email), fast_url, ["account.credited"])
    try:
        for _ in range(12):
            factories.fund(sessions, admin_user, slow_owner.account, 1)
        started = time.monotonic()
        factories.fund(sessions, admin_user, fast_owner.account, 1)
        receiver.wait(fast_url, 1, timeout=30)
        waited = time.monotonic() - started
        assert waited < 4, f"the fast partner waited {waited:.1f}s behind the slow one"
        assert len(receiver.requests(slow_url)) <= 3  # the slow one went one at a time
    finally:
        receiver.answer_from_now_on(slow_url, 200)  # let its backlog drain fast for the next tests
