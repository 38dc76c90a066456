"""Statuses, roles and decisions cross the edge as the core enums' values, in and out.

web/schemas.py declares them with ``fields.Enum`` (by value): the OpenAPI spec lists exactly the
enum's values for input filters and output fields alike, and a filter arrives in core as a member.
"""

from __future__ import annotations

import enum
from typing import Any

import pytest

from core.events import EventType
from core.models import AccountStatus, KycStatus, Role, TransferKind, TransferStatus, UserStatus
from core.webhooks.models import DeliveryStatus
from tests.factories import fund
from tests.integration.test_api import assert_problem, login


@pytest.fixture
def spec(app) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return app.test_client().get("/api/v1/openapi.json").json  # type: ignore[no-any-return]


def values(e: type[enum.Enum]) -> list[str]:
    return [m.value for m in e]


@pytest.mark.parametrize(
    ("schema", "field", "enum_"),
    [
        ("UserOut", "role", Role),
        ("UserOut", "kyc_status", KycStatus),
        ("UserOut", "status", UserStatus),
        ("AccountOut", "status", AccountStatus),
        ("TransferOut", "kind", TransferKind),
        ("TransferOut", "status", TransferStatus),
        ("DeliveryOut", "status", DeliveryStatus),
        ("DeliveryOut", "event_type", EventType),
    ],
)
def test_output_fields_publish_the_enum_values(spec, schema, field, enum_) -> None:  # type: ignore[no-untyped-def]
    prop = spec["components"]["schemas"][schema]["properties"][field]
    assert shared_enum(spec, prop) == {"type": "string", "enum": values(enum_)}


def shared_enum(spec: dict[str, Any], prop: dict[str, Any]) -> dict[str, Any]:
    """Enums are shared components, referenced by each field (web/openapi_spec.py)."""
    name = prop["$ref"].rsplit("/", 1)[1]
    return spec["components"]["schemas"][name]  # type: ignore[no-any-return]


def test_input_filters_and_decisions_publish_the_enum_values(spec) -> None:  # type: ignore[no-untyped-def]
    def query_enum(path: str, name: str) -> list[str]:
        params = spec["paths"][path]["get"]["parameters"]
        return next(shared_enum(spec, p["schema"])["enum"] for p in params if p["name"] == name)  # type: ignore[no-any-return]

    assert query_enum("/api/v1/transfers", "status") == values(TransferStatus)
    assert query_enum("/api/v1/admin/users", "kyc_status") == values(KycStatus)
    decision = spec["components"]["schemas"]["KycDecisionIn"]["properties"]["decision"]
    assert shared_enum(spec, decision) == {"type": "string", "enum": ["APPROVE", "REJECT"]}


def test_status_filter_selects_by_value_and_refuses_others(client, make_customer, sessions, admin_user) -> None:  # type: ignore[no-untyped-def]
    # Deposits only: a PENDING transfer left behind would be drained by other tests' partitions.
    alice = make_customer()
    fund(sessions, admin_user, alice.account, 1_000)
    fund(sessions, admin_user, alice.account, 2_000)
    h = login(client, alice.email)
    listed = f"/api/v1/transfers?account_id={alice.account.id}"
    completed = client.get(f"{listed}&status=COMPLETED", headers=h).json["items"]
    assert sorted(t["amount"] for t in completed) == [1_000, 2_000]
    assert {(t["kind"], t["status"]) for t in completed} == {("DEPOSIT", "COMPLETED")}
    for status in set(values(TransferStatus)) - {"COMPLETED"}:
        assert client.get(f"{listed}&status={status}", headers=h).json["items"] == []
    for bad in ("completed", "PROCESSINGX", ""):
        assert_problem(client.get(f"{listed}&status={bad}", headers=h), 422, "VALIDATION_ERROR")


def test_kyc_decision_by_value(client, make_customer, admin_user) -> None:  # type: ignore[no-untyped-def]
    pending = make_customer(approved=False)
    admin_h = login(client, admin_user.email)
    url = f"/api/v1/admin/users/{pending.user.id}/kyc"
    assert_problem(client.post(url, json={"decision": "approve"}, headers=admin_h), 422, "VALIDATION_ERROR")
    user = client.post(url, json={"decision": "APPROVE"}, headers=admin_h).json
    assert (user["kyc_status"], user["role"], user["status"]) == ("APPROVED", "customer", "ACTIVE")
    listed = client.get("/api/v1/admin/users?kyc_status=APPROVED&limit=100", headers=admin_h).json["items"]
    assert all(u["kyc_status"] == "APPROVED" for u in listed)
    assert_problem(client.get("/api/v1/admin/users?kyc_status=approved", headers=admin_h), 422, "VALIDATION_ERROR")
