"""Counterparties (API.md "External money and reconciliation"): an IBAN checked by schwifty (check
digits, the country's length) or an account with an ABA routing number; owner-scoped."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from core.payouts.models import Counterparty
from tests.integration.test_api import assert_problem, login

API = "/api/v1/counterparties"


def test_an_iban_counterparty_is_stored_compact_and_shown_to_its_owner_only(client, make_customer) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    h = login(client, alice.email)
    r = client.post(API, json={"name": "Landlord", "currency": "EUR", "iban": "DE89 3704 0044 0532 0130 00"}, headers=h)
    assert r.status_code == 201, r.json
    assert r.json["iban"] == "DE89370400440532013000" and r.json["account_number_last4"] is None
    assert client.get(f"{API}/{r.json['id']}", headers=h).json["name"] == "Landlord"
    assert [c["id"] for c in client.get(API, headers=h).json["items"]] == [r.json["id"]]
    bobs = login(client, bob.email)
    assert_problem(client.get(f"{API}/{r.json['id']}", headers=bobs), 404, "NOT_FOUND")
    assert client.get(API, headers=bobs).json["items"] == []


def test_a_us_account_shows_only_its_last_four_digits(client, make_customer) -> None:  # type: ignore[no-untyped-def]
    alice = make_customer()
    body = {"name": "Utility", "currency": "USD", "account_number": "000123456789", "routing_number": "021000021"}
    r = client.post(API, json=body, headers=login(client, alice.email))
    assert r.status_code == 201, r.json
    assert r.json["account_number_last4"] == "6789" and r.json["iban"] is None
    assert "account_number" not in r.json and "routing_number" not in r.json


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"iban": "DE89370400440532013001"}, "iban"),  # check digits
        ({"iban": "DE8937040044053201300"}, "iban"),  # the country's length
        ({"iban": "XX89370400440532013000"}, "iban"),  # no such country
        ({}, "iban"),  # no destination
        ({"iban": "DE89370400440532013000", "account_number": "1234", "routing_number": "021000021"}, "iban"),
        ({"account_number": "000123456789", "routing_number": "021000022"}, "routing_number"),  # checksum
        ({"account_number": "000123456789"}, "routing_number"),
    ],
)
def test_a_bad_destination_is_a_422_naming_the_field_and_writes_nothing(
    client, sessions, make_customer, body: dict[str, Any], field: str
) -> None:  # type: ignore[no-untyped-def]
    alice = make_customer()
    r = client.post(API, json={"name": "X", "currency": "EUR", **body}, headers=login(client, alice.email))
    problem = assert_problem(r, 422, "VALIDATION_ERROR")
    assert field in problem["errors"], problem
    with sessions() as s:
        assert s.scalar(select(func.count()).where(Counterparty.user_id == alice.user.id)) == 0
