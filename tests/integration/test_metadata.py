"""Metadata on transfers (single, batch items) and accounts (API.md "Metadata"): validated with
the refusal naming the key, returned on the resource and in event payloads (the Python and the
SQL rendering alike), filterable through the GIN index, checked with EXPLAIN on a large table."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import event, select, text

from core.events import DomainEvent, transfer_data, transfer_data_sql
from core.models import Transfer
from tests.factories import fund
from tests.integration.test_api import assert_problem, login, post_transfer, transfer_body
from tests.settling import settle_transfer

ORDER = {"order_id": "A-17", "customer": "Zoë"}


@pytest.fixture
def pair(make_customer, sessions, admin_user):  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 10_000)
    return alice, bob


def events_of(sessions, transfer_id: str) -> list[DomainEvent]:  # type: ignore[no-untyped-def]
    with sessions() as s:
        stmt = select(DomainEvent).where(DomainEvent.data["id"].astext == transfer_id)
        return list(s.scalars(stmt.order_by(DomainEvent.sequence)))


def test_a_transfer_keeps_its_metadata_everywhere_it_appears(client, sessions, pair) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    headers = login(client, alice.email)
    r = post_transfer(client, headers, transfer_body(alice, bob, metadata=ORDER))
    assert r.status_code == 202, r.json
    assert r.json["metadata"] == ORDER
    tid = r.json["id"]
    with sessions.begin() as s:
        settle_transfer(s, uuid.UUID(tid))
    assert client.get(f"/api/v1/transfers/{tid}", headers=headers).json["metadata"] == ORDER
    payloads = [e.data for e in events_of(sessions, tid)]
    assert [p["status"] for p in payloads][:2] == ["PENDING", "COMPLETED"]
    assert all(p["metadata"] == ORDER for p in payloads)  # accept's SQL, settlement's SQL
    with sessions() as s:  # transfer_data and its SQL twin agree with metadata too
        t = s.get_one(Transfer, uuid.UUID(tid))
        from_sql = s.scalar(select(text(transfer_data_sql("t"))).select_from(text("transfers t")).where(
            text("t.id = :id")).params(id=t.id))  # fmt: skip
        assert from_sql == transfer_data(t) and from_sql["metadata"] == ORDER
    plain = post_transfer(client, headers, transfer_body(alice, bob))
    assert plain.json["metadata"] == {}


def test_the_same_key_with_other_metadata_is_a_reuse(client, pair) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    headers = login(client, alice.email)
    first = post_transfer(client, headers, transfer_body(alice, bob, metadata=ORDER), key="k-meta-1")
    assert first.status_code == 202
    again = post_transfer(client, headers, transfer_body(alice, bob, metadata=ORDER), key="k-meta-1")
    assert again.status_code == 200 and again.json["id"] == first.json["id"]
    other = post_transfer(client, headers, transfer_body(alice, bob, metadata={"order_id": "B"}), key="k-meta-1")
    assert_problem(other, 422, "IDEMPOTENCY_KEY_REUSED")


def test_batch_items_carry_metadata(client, pair) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    headers = login(client, alice.email)
    item = {k: v for k, v in transfer_body(alice, bob).items() if k != "pin"}
    r = client.post(
        "/api/v1/transfers/batch",
        json={"pin": "1234", "items": [
            {**item, "idempotency_key": "b1", "metadata": {"line": "1"}},
            {**item, "idempotency_key": "b2"},
            {**item, "idempotency_key": "b3", "metadata": {"x" * 41: "v"}},
        ]},
        headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
    )  # fmt: skip
    assert r.status_code in (200, 207), r.json
    items = r.json["items"]
    assert items[0]["transfer"]["metadata"] == {"line": "1"}
    assert items[1]["transfer"]["metadata"] == {}
    assert items[2]["status"] == 422 and "x" * 41 in items[2]["error"]["errors"]["metadata"]


def test_bad_metadata_is_422_naming_the_key(client, pair) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    headers = login(client, alice.email)
    cases: list[tuple[Any, Any]] = [
        ({"order_id": "x" * 501}, "order_id"),
        ({"k" * 41: "v"}, "k" * 41),
        ({"n": 5}, "n"),
        ({f"k{i}": "v" for i in range(21)}, None),  # too many keys: errors.metadata itself
        (["a"], None),
    ]
    for value, key in cases:
        body = assert_problem(
            post_transfer(client, headers, transfer_body(alice, bob, metadata=value)), 422, "VALIDATION_ERROR"
        )
        wrong = body["errors"]["metadata"]
        if key is None:
            assert isinstance(wrong, list), body
        else:
            assert key in wrong, body


def test_list_transfers_by_metadata_is_scoped(client, pair, make_customer) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    headers = login(client, alice.email)
    order = f"A-{uuid.uuid4().hex[:6]}"
    wanted = post_transfer(client, headers, transfer_body(alice, bob, metadata={"order_id": order, "n": "1"}))
    post_transfer(client, headers, transfer_body(alice, bob, metadata={"order_id": "other"}))
    post_transfer(client, headers, transfer_body(alice, bob))
    r = client.get(f"/api/v1/transfers?metadata[order_id]={order}", headers=headers)
    assert r.status_code == 200, r.json
    assert [t["id"] for t in r.json["items"]] == [wanted.json["id"]]
    both = client.get(f"/api/v1/transfers?metadata[order_id]={order}&metadata[n]=2", headers=headers)
    assert both.json["items"] == []
    assert client.get(f"/api/v1/transfers?metadata[order_id]={order}", headers=login(client, bob.email)).json[
        "items"][0]["id"] == wanted.json["id"]  # fmt: skip
    stranger = login(client, make_customer().email)
    assert client.get(f"/api/v1/transfers?metadata[order_id]={order}", headers=stranger).json["items"] == []
    bad = client.get(f"/api/v1/transfers?metadata[{'k' * 41}]=v", headers=headers)
    assert_problem(bad, 422, "VALIDATION_ERROR")


def test_account_metadata_patch(client, make_customer) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    headers = login(client, alice.email)
    url = f"/api/v1/accounts/{alice.account.id}"
    r = client.patch(url, json={"metadata": {"crm_id": "C-9"}}, headers=headers)
    assert r.status_code == 200, r.json
    assert r.json["metadata"] == {"crm_id": "C-9"}
    assert client.get(url, headers=headers).json["metadata"] == {"crm_id": "C-9"}
    assert client.patch(url, json={"metadata": {}}, headers=headers).json["metadata"] == {}
    assert_problem(client.patch(url, json={"metadata": {"a": "x" * 501}}, headers=headers), 422, "VALIDATION_ERROR")
    other = client.patch(f"/api/v1/accounts/{bob.account.id}", json={"metadata": {"a": "b"}}, headers=headers)
    assert_problem(other, 404, "NOT_FOUND")


def test_the_metadata_filter_reads_the_gin_index_on_a_large_table(sessions, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    from core.transfers import queries

    alice, bob = make_customer(), make_customer()
    with sessions() as s:
        # 30,000 transfers with metadata, one of them the order sought: a sequential scan would show.
        s.execute(
            text(
                "INSERT INTO transfers (id, kind, initiated_by, idempotency_key, request_hash, source_account_id,"
                " destination_account_id, amount, currency, status, completed_at, metadata)"
                " SELECT gen_random_uuid(), 'TRANSFER', :user, 'bulk-' || n, 'h', :src, :dst, 1, 'USD', 'COMPLETED',"
                " now(), jsonb_build_object('order_id', 'O-' || n, 'shop', 'S-' || (n % 50))"
                " FROM generate_series(1, 30000) n"
            ),
            {"user": alice.user.id, "src": alice.account.id, "dst": bob.account.id},
        )
        s.execute(text("ANALYZE transfers"))
        seen: list[tuple[str, Any]] = []

        def capture(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
            if "@>" in statement:
                seen.append((statement, parameters))

        connection = s.connection()
        event.listen(connection, "before_cursor_execute", capture)
        try:
            page = queries.list_visible(
                s, admin_user, status=None, account_id=None, cursor=None, limit=50, metadata={"order_id": "O-777"}
            )
            assert len(page.items) == 1
            mine = queries.list_visible(
                s, alice.user, status=None, account_id=None, cursor=None, limit=50, metadata={"order_id": "O-778"}
            )
            assert len(mine.items) == 1
        finally:
            event.remove(connection, "before_cursor_execute", capture)
        for statement, parameters in seen:
            plan = "\n".join(r[0] for r in connection.exec_driver_sql("EXPLAIN " + statement, parameters))
            assert "ix_transfers_metadata" in plan, plan
            assert "Seq Scan on transfers" not in plan, plan
        s.rollback()
