"""The OpenAPI schema carries the rules validation enforces, in a dialect every client reads.

A client generator or a fuzzer (schemathesis) sees the spec, not the marshmallow code: the
patterns, lengths and ranges of POST /transfers, POST /webhooks/endpoints and PUT /me/pin must
be there, and a pattern must mean the same in ECMA-262 (JSON Schema's dialect) as in Python.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.integration.test_api import login

# Python-only syntax that ECMA-262 reads differently or not at all (\Z is a literal "Z" there).
NOT_PORTABLE = re.compile(r"\\[AZz]|\(\?P<|\(\?[aiLmsux]+\)")


@pytest.fixture
def schemas(app) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    spec = app.test_client().get("/api/v1/openapi.json").json
    return spec["components"]["schemas"]  # type: ignore[no-any-return]


def props(schemas: dict[str, Any], name: str) -> dict[str, Any]:
    return schemas[name]["properties"]  # type: ignore[no-any-return]


def test_patterns_are_portable_and_anchored(schemas) -> None:  # type: ignore[no-untyped-def]
    for name in ("TransferIn", "EndpointIn", "PinIn"):
        for field, prop in props(schemas, name).items():
            pattern = prop.get("pattern")
            if pattern is not None:
                assert not NOT_PORTABLE.search(pattern), f"{name}.{field}: {pattern!r} is Python-only"
                assert pattern.startswith("^") and pattern.endswith("$"), f"{name}.{field}: {pattern!r}"


def test_transfer_rules_are_in_the_spec(schemas) -> None:  # type: ignore[no-untyped-def]
    p = props(schemas, "TransferIn")
    assert (p["amount"]["minimum"], p["amount"]["maximum"]) == (1, 2**53 - 1)
    assert p["currency"] == {"$ref": "#/components/schemas/Currency"}  # one shared enum (web/openapi_spec.py)
    currencies = schemas["Currency"]["enum"]  # ISO 4217 (pycountry): a made-up "ZZZ" is not offered
    assert {"USD", "EUR", "JPY"} <= set(currencies) and "ZZZ" not in currencies
    assert p["pin"]["pattern"] == "^[0-9]{4,6}$"
    assert p["reference"]["maxLength"] == 140
    assert p["source_account_id"]["format"] == p["destination_account_id"]["format"] == "uuid"


def test_pin_rules_are_in_the_spec(schemas) -> None:  # type: ignore[no-untyped-def]
    p = props(schemas, "PinIn")
    assert p["pin"]["pattern"] == p["current_pin"]["pattern"] == "^[0-9]{4,6}$"


def test_endpoint_url_shape_is_in_the_spec_and_matches_validation(schemas, client, make_customer) -> None:  # type: ignore[no-untyped-def]
    url = props(schemas, "EndpointIn")["url"]
    assert url["format"] == "uri" and (url["minLength"], url["maxLength"]) == (1, 2048)
    shape = re.compile(url["pattern"])
    h = login(client, make_customer().email)
    for candidate in (
        "ftp://x.example/h",
        "http://u:p@x.example/h",
        "http://x.example/h#f",
        "x.example/h",
        "http:///h",
    ):
        assert not shape.fullmatch(candidate), candidate  # the spec refuses it...
        r = client.post(
            "/api/v1/webhooks/endpoints", json={"url": candidate, "events": ["transfer.completed"]}, headers=h
        )
        assert r.status_code == 422, (candidate, r.json)  # ...and so does the API
    assert shape.fullmatch("http://127.0.0.1:9/discard?tenant=7") and shape.fullmatch("https://[::1]:8443/")


def test_a_trailing_newline_is_refused_by_the_published_pattern_validation(client, make_customer) -> None:  # type: ignore[no-untyped-def]
    c = make_customer(pin=None)
    h = login(client, c.email)
    r = client.put("/api/v1/me/pin", json={"pin": "1234\n"}, headers=h)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
