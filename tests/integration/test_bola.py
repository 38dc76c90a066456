"""BOLA, generated from the live OpenAPI spec: every operation whose path names a resource id is tried
by another customer with a real id of someone else's resource. Customer paths answer 404 exactly as for
an id that does not exist (nothing revealed), admin paths answer 403, and nothing changes.

A new endpoint is covered as soon as it is in the spec; a new kind of path parameter fails the test
until ``owned_resources`` below learns how to create one (so coverage cannot silently lapse)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Table, select

from core.identity import devices
from core.models import Transfer
from core.schema import Base
from tests.authflow import API, bearer, tokens
from tests.factories import PIN, fund

PARAM = re.compile(r"{([^}]+)}")
METHODS = ("get", "post", "put", "patch", "delete")
VOLATILE = {"last_seen_at"}  # moves when the owner logs in, not because of the attacker
# Paths whose resource belongs to no user: every signed-in user reads the same (published audit roots).
SHARED = {f"{API}/audit/roots/{{n}}"}


@pytest.fixture
def spec(client) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return client.get("/openapi.json").json  # type: ignore[no-any-return]


@pytest.fixture
def owned_resources(client, spec, make_customer, sessions, admin_user):  # type: ignore[no-untyped-def]
    """Alice's real resources, one per kind of path parameter in the spec."""
    alice = make_customer()
    fund(sessions, admin_user, alice.account, 5_000)  # a completed deposit: a transfer alice can see
    with sessions.begin() as s:
        transfer_id = s.scalar(select(Transfer.id).where(Transfer.destination_account_id == alice.account.id))
        devices.trust(s, user_id=alice.user.id, device_id="alice-phone", now=datetime.now(UTC))
    h = bearer(tokens(client, alice.email)["access_token"])
    ids: dict[str, Any] = {
        "account_id": alice.account.id,
        "user_id": alice.user.id,
        "transfer_id": transfer_id,
        "device_id": client.get(f"{API}/me/devices", headers=h).json["items"][0]["id"],
        "n": 1,  # an audit root: shared, not owned (SHARED), read in the snapshot only
    }
    monitor = {"field": "balance", "operator": "lt", "value": 0}
    ids["monitor_id"] = client.post(f"{API}/accounts/{alice.account.id}/monitors", json=monitor, headers=h).json["id"]
    if f"{API}/scheduled-transfers" in spec["paths"]:
        schedule = {
            "source_account_id": str(alice.account.id),
            "destination_account_id": str(make_customer().account.id),
            "amount": 100,
            "currency": "USD",
            "pin": PIN,
            "start_at": (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "on_insufficient_funds": "skip",
        }
        key = {"Idempotency-Key": str(uuid.uuid4())}
        r = client.post(f"{API}/scheduled-transfers", json=schedule, headers={**h, **key})
        assert r.status_code == 201, r.json
        ids["schedule_id"] = r.json["id"]
    if f"{API}/counterparties" in spec["paths"]:
        payee = {"name": "Landlord", "currency": "EUR", "iban": "DE89370400440532013000"}
        r = client.post(f"{API}/counterparties", json=payee, headers=h)
        assert r.status_code == 201, r.json
        ids["counterparty_id"] = r.json["id"]
    if f"{API}/payouts" in spec["paths"]:
        ids.update(_payout_and_file(client, sessions, alice, h, admin_user))
    if f"{API}/admin/reconciliations" in spec["paths"]:
        ids.update(_reconciliation(client, admin_user))
    if f"{API}/webhooks/endpoints" in spec["paths"]:
        r = client.post(
            f"{API}/webhooks/endpoints",
            # transfer.failed only: alice's completed deposit gives this endpoint no traffic meanwhile.
            json={"url": "http://127.0.0.1:9/alice-hook", "events": ["transfer.failed"]},
            headers=h,
        )
        assert r.status_code == 201, r.json
        ids["endpoint_id"] = r.json["id"]
        ids["delivery_id"] = _failed_delivery(sessions, alice.user.id, uuid.UUID(r.json["id"]))
    return alice, h, {k: str(v) for k, v in ids.items()}


def _reconciliation(client, admin_user) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """A statement imported by an admin (an admin's resource) and its first line."""
    statement = (
        f"booking_date,amount,currency,reference,end_to_end_id,counterparty\n2026-12-01,100,USD,B{uuid.uuid4().hex},,\n"
    )
    admin_h = bearer(tokens(client, admin_user.email)["access_token"])
    r = client.post(f"{API}/admin/reconciliations", data=statement, headers={**admin_h, "Content-Type": "text/csv"})
    assert r.status_code == 201, r.json
    return {"import_id": r.json["id"], "line": "1"}


def _payout_and_file(client, sessions, alice, h, admin_user) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Alice's payout, its transfer settled, sent in a payout file (an admin's resource)."""
    from tests.settling import settle_transfer

    payee = {"name": "Supplier", "currency": "USD", "account_number": "000123456789", "routing_number": "021000021"}
    to = client.post(f"{API}/counterparties", json=payee, headers=h).json["id"]
    body = {
        "source_account_id": str(alice.account.id),
        "counterparty_id": to,
        "amount": 100,
        "currency": "USD",
        "pin": PIN,
    }
    r = client.post(f"{API}/payouts", json=body, headers={**h, "Idempotency-Key": str(uuid.uuid4())})
    assert r.status_code == 202, r.json
    with sessions.begin() as s:
        settle_transfer(s, uuid.UUID(r.json["transfer_id"]))
    admin_h = bearer(tokens(client, admin_user.email)["access_token"])
    made = client.post(f"{API}/admin/payout-files", json={"currency": "USD"}, headers=admin_h)
    assert made.status_code == 201, made.json
    return {"payout_id": r.json["id"], "file_id": made.json["id"]}


def _failed_delivery(sessions, user_id: uuid.UUID, endpoint_id: uuid.UUID) -> uuid.UUID:  # type: ignore[no-untyped-def]
    """A finished (FAILED) delivery to alice's endpoint: nothing in the background touches it."""
    from core.events import DomainEvent, EventType
    from core.webhooks.models import DeliveryStatus, WebhookDelivery

    now = datetime.now(UTC)
    with sessions.begin() as s:
        event = DomainEvent(event_type=EventType("transfer.failed"), data={}, owner_ids=[user_id], relayed_at=now)
        s.add(event)
        s.flush()
        delivery = WebhookDelivery(
            event_id=event.id,
            endpoint_id=endpoint_id,
            event_type=event.event_type,
            status=DeliveryStatus.FAILED,
            attempt=1,
            next_attempt_at=None,
        )
        s.add(delivery)
        s.flush()
        return delivery.id


def operations(spec: dict[str, Any], *, with_params: bool) -> list[tuple[str, str, dict[str, Any]]]:
    ops = []
    for path, item in spec["paths"].items():
        if not path.startswith(API) or bool(PARAM.search(path)) != with_params:
            continue
        ops += [(method, path, op) for method, op in item.items() if method in METHODS]
    return ops


def fill(path: str, ids: dict[str, str]) -> str:
    def one(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in ids:
            pytest.fail(f"{path}: no owned resource for {{{name}}}; teach owned_resources to create one")
        return ids[name]

    return PARAM.sub(one, path)


def example(schema: dict[str, Any], spec: dict[str, Any]) -> Any:
    """A small valid value for a JSON schema (required properties only)."""
    if "$ref" in schema:
        return example(spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]], spec)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        return {k: example(schema["properties"][k], spec) for k in schema.get("required", [])}
    if kind == "array":
        return [example(schema["items"], spec)] * max(1, schema.get("minItems", 1))
    if kind == "integer":
        return max(1, schema.get("minimum", 1))
    if kind == "boolean":
        return True
    if schema.get("format") == "uuid":
        return str(uuid.uuid4())
    if schema.get("format") == "date-time":  # e.g. a webhook replay's range
        return "2026-01-01T00:00:00Z"
    if schema.get("pattern") == "^[A-Z]{3}$":
        return "USD"
    if schema.get("pattern") == "^[0-9]{4,6}$":
        return "1234"
    return "x" * max(1, schema.get("minLength", 1))


def call(client, method: str, path: str, op: dict[str, Any], spec: dict[str, Any], headers: dict[str, str]):  # type: ignore[no-untyped-def]
    kwargs: dict[str, Any] = {"headers": {**headers, "Idempotency-Key": str(uuid.uuid4())}}
    # Required query parameters get a valid value, so the answer is about the resource, not the query.
    query = {p["name"]: p["schema"] for p in op.get("parameters", []) if p.get("in") == "query" and p.get("required")}
    if query:
        kwargs["query_string"] = {name: _query_example(schema, spec) for name, schema in query.items()}
    body = op.get("requestBody", {}).get("content", {}).get("application/json")
    if body:
        kwargs["json"] = example(body["schema"], spec)
    return getattr(client, method)(path, **kwargs)


def _query_example(schema: dict[str, Any], spec: dict[str, Any]) -> Any:
    if schema.get("format") == "date-time":
        return "2026-01-01T00:00:00Z"
    return example(schema, spec)


def snapshot(client, spec, ids: dict[str, str], owner_headers: dict[str, str], sessions) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """What the owner sees through every GET of the API, and the database rows of each resource."""
    seen: dict[str, Any] = {}
    for method, path, _ in operations(spec, with_params=True) + operations(spec, with_params=False):
        if method == "get" and not path.startswith(f"{API}/admin"):
            r = client.get(fill(path, ids), headers=owner_headers)
            seen[path] = (r.status_code, _stable(r.json))
    # The resources' uuids (n is a root's number, line a statement line's).
    wanted = {v for k, v in ids.items() if k not in ("n", "line")}
    with sessions() as s:
        for table in Base.metadata.sorted_tables:
            if _has_uuid_id(table):
                for row in s.execute(select(table).where(table.c.id.in_([uuid.UUID(i) for i in wanted]))).mappings():
                    seen[f"{table.name}:{row['id']}"] = _stable(dict(row))
    return seen


def _has_uuid_id(table: Table) -> bool:
    return "id" in table.c and str(table.c.id.type).upper() in ("UUID", "CHAR(32)")


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def test_other_users_ids_are_404_everywhere_and_change_nothing(
    client, spec, owned_resources, make_customer, sessions
) -> None:  # type: ignore[no-untyped-def]
    _alice, alice_h, ids = owned_resources
    mallory_h = bearer(tokens(client, make_customer().email)["access_token"])
    before = snapshot(client, spec, ids, alice_h, sessions)
    customer_ops = [
        op for op in operations(spec, with_params=True) if not op[1].startswith(f"{API}/admin/") and op[1] not in SHARED
    ]
    assert {p for _, p, _ in customer_ops} >= {
        f"{API}/accounts/{{account_id}}",
        f"{API}/transfers/{{transfer_id}}",
        f"{API}/me/devices/{{device_id}}",
    }
    failures = []
    for method, path, op in customer_ops:
        r = call(client, method, fill(path, ids), op, spec, mallory_h)
        missing = call(client, method, fill(path, {k: str(uuid.uuid4()) for k in ids}), op, spec, mallory_h)
        body, ghost = r.json or {}, missing.json or {}
        if r.status_code != 404 or body.get("code") != "NOT_FOUND":
            failures.append(f"{method.upper()} {path}: {r.status_code} {body}")
        elif (body["detail"], body["title"]) != (ghost.get("detail"), ghost.get("title")):
            failures.append(
                f"{method.upper()} {path}: someone else's id answers unlike a missing one: {body} / {ghost}"
            )
    assert failures == [], "\n".join(failures)
    assert snapshot(client, spec, ids, alice_h, sessions) == before


def test_admin_paths_are_403_for_customers_and_change_nothing(
    client, spec, owned_resources, make_customer, sessions
) -> None:  # type: ignore[no-untyped-def]
    _alice, alice_h, ids = owned_resources
    mallory_h = bearer(tokens(client, make_customer().email)["access_token"])
    before = snapshot(client, spec, ids, alice_h, sessions)
    admin_ops = [
        op
        for op in operations(spec, with_params=True) + operations(spec, with_params=False)
        if op[1].startswith(f"{API}/admin/")
    ]
    assert len(admin_ops) >= 6
    failures = []
    for method, path, op in admin_ops:
        for who in (mallory_h, alice_h):
            r = call(client, method, fill(path, ids), op, spec, who)
            if r.status_code != 403 or (r.json or {}).get("code") != "FORBIDDEN":
                failures.append(f"{method.upper()} {path}: {r.status_code} {r.json}")
    assert failures == [], "\n".join(failures)
    assert snapshot(client, spec, ids, alice_h, sessions) == before
