"""HTTP hardening: hostile JSON, body size, security headers, CORS."""

from __future__ import annotations

import pytest

from tests.authflow import API, PROBLEM, assert_problem, bearer, tokens
from tests.factories import PASSWORD
from web.hardening import json_depth

JSON = {"Content-Type": "application/json"}
DEEP = [
    "[" * 10_000 + "]" * 10_000,
    "[" * 10_000,
    '{"a":' * 10_000 + "1" + "}" * 10_000,
    '{"email": ' + "[" * 5_000 + "]" * 5_000 + "}",
]


@pytest.fixture
def auth_headers(client, make_customer):  # type: ignore[no-untyped-def]
    c = make_customer()
    return {**JSON, **bearer(tokens(client, c.email)["access_token"]), "Idempotency-Key": "k"}


@pytest.mark.parametrize("body", DEEP, ids=["array", "unclosed", "object", "inside-a-field"])
@pytest.mark.parametrize(
    "method,path", [("post", "/auth/login"), ("post", "/auth/register"), ("post", "/transfers"), ("put", "/me/pin")]
)
def test_deeply_nested_json_is_400_not_500(client, auth_headers, method, path, body) -> None:  # type: ignore[no-untyped-def]
    r = getattr(client, method)(API + path, data=body, headers=auth_headers)
    assert_problem(r, 400, "BAD_REQUEST")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_json_in_another_encoding_than_utf8_is_400_not_500(client, encoding) -> None:  # type: ignore[no-untyped-def]
    """The parser reads UTF-16/32 too, where the byte-level nesting check saw no brackets."""
    for deep in (
        "[" * 5_000 + "]" * 5_000,
        # U+2241 encodes to a byte 0x22 (a quote) in UTF-16: a byte-level scanner loses track of strings.
        '{"email": "\u2241", "password": ' + "[" * 5_000 + "]" * 5_000 + "}",
    ):
        assert_problem(client.post(f"{API}/auth/login", data=deep.encode(encoding), headers=JSON), 400, "BAD_REQUEST")
    login = '{"email": "a@b.c", "password": "correct horse battery"}'.encode(encoding)
    assert_problem(client.post(f"{API}/auth/login", data=login, headers=JSON), 400, "BAD_REQUEST")


def test_nesting_inside_strings_is_only_text(client) -> None:  # type: ignore[no-untyped-def]
    body = '{"email": "' + "[{" * 100 + '\\"]", "password": "x"}'
    assert json_depth(body.encode()) == 1
    assert_problem(client.post(f"{API}/auth/login", data=body, headers=JSON), 401, "UNAUTHORIZED")


@pytest.mark.parametrize(
    "body",
    [
        "{not json",
        '{"email": "a@b.c", "password": }',
        '{"email": "a@b.c"',
        b'{"email": "\xff\xfe", "password": "x"}',
        '{"email": NaN, "password": "x"}',
        '{"email": "a@b.c", "password": 1e999999}',
        '{"email": "a@b.c", "password": 1' + "0" * 5000 + "}",
        '{"email": "a@b.c\\u0000", "password": "x"}',
        '{"email": "\\ud800", "password": "x"}',
        "",
        "null",
        '"just a string"',
        "[1, 2]",
        "123",
        '{"email": {"$ne": null}, "password": {"$gt": ""}}',
        '{"email": "a@b.c", "email": "x@y.z", "password": "p"}',
        '{"email": "' + "a" * 60_000 + '", "password": "x"}',
    ],
)
def test_malformed_bodies_are_4xx_problems_never_500(client, body) -> None:  # type: ignore[no-untyped-def]
    r = client.post(f"{API}/auth/login", data=body, headers=JSON)
    assert 400 <= r.status_code < 500, r.get_data(as_text=True)
    assert r.headers["Content-Type"] == PROBLEM


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_malformed_json(client, auth_headers, literal) -> None:  # type: ignore[no-untyped-def]
    """Not JSON (RFC 8259), though Python's parser reads them: 400 BAD_REQUEST, not a field's 422."""
    body = '{"source_account_id": "x", "destination_account_id": "y", "amount": ' + literal + ', "currency": "USD"}'
    assert_problem(client.post(f"{API}/transfers", data=body, headers=auth_headers), 400, "BAD_REQUEST")
    login = '{"email": "a@b.c", "password": ' + literal + "}"
    assert_problem(client.post(f"{API}/auth/login", data=login, headers=JSON), 400, "BAD_REQUEST")


def test_wrong_content_type_is_a_problem(client) -> None:  # type: ignore[no-untyped-def]
    r = client.post(f"{API}/auth/login", data="email=a&password=b", headers={"Content-Type": "text/plain"})
    assert 400 <= r.status_code < 500 and r.headers["Content-Type"] == PROBLEM


def test_body_over_64_kib_is_413(client, auth_headers) -> None:  # type: ignore[no-untyped-def]
    big = '{"reference": "' + "x" * (64 * 1024) + '"}'
    assert_problem(client.post(f"{API}/transfers", data=big, headers=auth_headers), 413, "PAYLOAD_TOO_LARGE")


def test_security_headers_on_every_response(client, auth_headers) -> None:  # type: ignore[no-untyped-def]
    for r in (
        client.get(f"{API}/me", headers=auth_headers),
        client.post(f"{API}/auth/login", json={"email": "x@y.z", "password": PASSWORD}),
        client.get(f"{API}/accounts"),
        client.get(f"{API}/nope"),
        client.get("/healthz"),
    ):
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Cache-Control"] == "no-store"
        assert r.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
        assert "Strict-Transport-Security" not in r.headers  # only in production (behind TLS)


def test_hsts_in_production(make_app, settings) -> None:  # type: ignore[no-untyped-def]
    # Validation bypassed on purpose: this is about headers, not about production's secret checks.
    app = make_app(settings=settings.model_copy(update={"app_env": "production"}))
    r = app.test_client().get("/healthz")
    assert r.headers["Strict-Transport-Security"].startswith("max-age=")


def test_cors_is_closed_by_default(client) -> None:  # type: ignore[no-untyped-def]
    origin = {"Origin": "https://evil.example"}
    for r in (
        client.get(f"{API}/healthz", headers=origin),
        client.options(f"{API}/transfers", headers={**origin, "Access-Control-Request-Method": "POST"}),
    ):
        assert not any(name.lower().startswith("access-control-") for name, _ in r.headers.items())


def access_control(r) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {k: v for k, v in r.headers.items() if k.lower().startswith("access-control-")}


def test_cors_allows_only_configured_origins(make_app) -> None:  # type: ignore[no-untyped-def]
    client = make_app(cors_origins="https://app.bank.example, https://admin.bank.example/").test_client()
    ok = client.get(f"{API}/healthz", headers={"Origin": "https://app.bank.example"})
    assert ok.headers["Access-Control-Allow-Origin"] == "https://app.bank.example"
    assert "Origin" in ok.headers["Vary"] and "Access-Control-Allow-Credentials" not in ok.headers
    exposed = {h.strip() for h in ok.headers["Access-Control-Expose-Headers"].split(",")}
    assert exposed == {
        "Location",
        "Retry-After",
        "X-Request-ID",
        "Idempotent-Replayed",
        "X-RateLimit-Limit",
        "X-RateLimit-Remaining",
    }
    assert "Access-Control-Allow-Methods" not in ok.headers  # a simple request is no preflight
    # An error answer carries the CORS headers too, or the browser hides the problem+json from the app.
    denied = client.get(f"{API}/transfers", headers={"Origin": "https://app.bank.example"})
    assert denied.status_code == 401 and denied.headers["Access-Control-Allow-Origin"] == "https://app.bank.example"

    preflight = client.options(
        f"{API}/transfers",
        headers={
            "Origin": "https://admin.bank.example",  # configured with a trailing slash, sent without
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key, x-request-id",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://admin.bank.example"
    allowed = {h.strip().lower() for h in preflight.headers["Access-Control-Allow-Headers"].split(",")}
    assert allowed == {"authorization", "content-type", "idempotency-key", "x-request-id"}
    methods = {m.strip() for m in preflight.headers["Access-Control-Allow-Methods"].split(",")}
    assert methods == {"GET", "POST", "PUT", "DELETE", "OPTIONS"}
    assert preflight.headers["Access-Control-Max-Age"] == "600"
    assert "Origin" in preflight.headers["Vary"]

    odd = client.options(
        f"{API}/transfers",
        headers={
            "Origin": "https://app.bank.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Authorization, X-Other",
        },
    )
    assert odd.headers["Access-Control-Allow-Headers"] == "Authorization"  # X-Other is not allowed
    patch = client.options(
        f"{API}/transfers", headers={"Origin": "https://app.bank.example", "Access-Control-Request-Method": "PATCH"}
    )
    assert "Access-Control-Allow-Methods" not in patch.headers

    for origin in ("https://app.bank.example.evil.com", "http://app.bank.example", "null"):
        evil = client.options(f"{API}/transfers", headers={"Origin": origin, "Access-Control-Request-Method": "POST"})
        assert access_control(evil) == {} and "Origin" in evil.headers["Vary"]
    # No Origin, no CORS: the allowed origins are never listed to whoever asks.
    assert access_control(client.get(f"{API}/healthz")) == {}


def test_cors_with_one_origin_still_varies_on_origin(make_app) -> None:  # type: ignore[no-untyped-def]
    client = make_app(cors_origins="https://app.bank.example").test_client()
    for origin in ("https://app.bank.example", "https://evil.example"):
        r = client.get(f"{API}/healthz", headers={"Origin": origin})
        assert r.headers.get_all("Vary").count("Origin") <= 1 and "Origin" in r.headers["Vary"]
    assert (
        client.get(f"{API}/healthz", headers={"Origin": "https://evil.example"}).headers.get(
            "Access-Control-Allow-Origin"
        )
        is None
    )


@pytest.mark.parametrize("value", ["%00", "%ED%A0%80", "a%00b"])
def test_unstorable_query_text_is_400(client, auth_headers, value) -> None:  # type: ignore[no-untyped-def]
    r = client.get(f"{API}/transfers?cursor={value}", headers=auth_headers)
    assert 400 <= r.status_code < 500 and r.headers["Content-Type"] == PROBLEM
