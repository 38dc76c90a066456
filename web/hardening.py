"""HTTP hardening: JSON-only bodies, hostile JSON, security headers, CORS (flask-cors, closed unless
configured), proxies.

The body size limit is Flask's MAX_CONTENT_LENGTH (413 PAYLOAD_TOO_LARGE, see web/__init__.py), raised
for the few endpoints in LARGE_BODIES. Every body is JSON (415 otherwise) except a view marked
``@raw_body``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

from apispec import BasePlugin
from flask import Flask, Response, current_app, request
from flask_cors import CORS
from werkzeug.middleware.proxy_fix import ProxyFix

from web.context import settings
from web.problems import problem
from web.request_limits import RequestLimits

MAX_JSON_DEPTH = 32
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # NUL and lone surrogates
API_PATH = "/api/"
CORS_ALLOW_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"]
CORS_EXPOSE_HEADERS = [
    "Location",
    "Retry-After",
    "X-Request-ID",
    "Idempotent-Replayed",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
]
CORS_ALLOW_METHODS = ["GET", "POST", "PUT", "DELETE", "OPTIONS"]
CORS_MAX_AGE_SECONDS = 600


def json_depth(data: bytes) -> int:
    """Deepest nesting of arrays/objects in a JSON text, without parsing it (strings skipped)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


# Endpoints whose bodies may exceed MAX_CONTENT_LENGTH: a batch of 1,000 transfers with long
# keys and references is up to ~600 KB.
LARGE_BODIES = {
    "transfer_batches.create_batch": 1024 * 1024,
    # A correspondent's statement file (web/reconciliations.py): a busy day of camt.053 is a few MB.
    "reconciliations.import_statement": 10 * 1024 * 1024,
}


def _body_limit() -> None:
    limit = LARGE_BODIES.get(request.endpoint or "")
    if limit is not None:
        request.max_content_length = limit


JSON_MEDIA_TYPE = "application/json"
_BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")
_RAW_BODY = "raw_body"

V = TypeVar("V", bound=Callable[..., Any])


def raw_body(view: V) -> V:
    """Marks a view whose body is not JSON by contract (e.g. a bank statement file as XML or CSV):
    any Content-Type reaches it, and it reads and checks ``request.get_data()`` itself. Anywhere
    under ``@blp.route``: ``functools.wraps`` carries the mark up to the function registered."""
    setattr(view, _RAW_BODY, True)
    return view


def takes_raw_body(endpoint: str | None) -> bool:
    return getattr(current_app.view_functions.get(endpoint or ""), _RAW_BODY, False)


def _json_bodies_only() -> Response | None:
    """A non-empty body sent as anything but ``application/json`` (or with no Content-Type) is 415,
    before the view runs, so it can change nothing.

    webargs reads a body of another type as absent, so ``curl -d '{"amount":100}'`` (curl sends it
    form-encoded) was taken as ``{}``: where every field is optional, a capture or a refund of
    everything. An empty body is still ``{}``. ``+json`` types are refused too: their semantics
    differ (``merge-patch+json``), and ``problem+json`` is an answer, not a request.
    """
    if request.method not in _BODY_METHODS or request.url_rule is None or takes_raw_body(request.endpoint):
        return None  # no route (404/405 answer it), or a body that is not JSON by contract
    if not request.get_data(cache=True):  # bounded by MAX_CONTENT_LENGTH (_body_limit ran first)
        return None
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if request.mimetype != JSON_MEDIA_TYPE or charset not in ("utf-8", "utf8"):
        return problem(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            "a request body must be JSON sent with Content-Type: application/json (charset utf-8 if given)",
        )
    return None


class JsonBodiesPlugin(BasePlugin):
    """Documents the 415 above on every operation that takes a body."""

    def operation_helper(self, path: str | None = None, operations: dict[str, Any] | None = None, **_: Any) -> None:
        for operation in (operations or {}).values():
            if isinstance(operation, dict) and "requestBody" in operation:
                # An int key, as flask-smorest writes its own (the spec is serialised with sorted keys).
                operation.setdefault("responses", {})[415] = "UNSUPPORTED_MEDIA_TYPE"


def _refuse_hostile_input() -> Response | None:
    """Input that would crash a parser or the database driver further in, refused as malformed (400):

    - ``NaN``, ``Infinity`` and ``-Infinity``, which Python's parser reads but JSON does not have;
    - JSON in another encoding than UTF-8 (the parser would take UTF-16/32);
    - nesting: Python's JSON parser recurses, a 10,000-deep array would be a RecursionError;
    - numbers past Python's int-parsing limit (4300 digits) raise a bare ValueError;
    - NUL characters and lone surrogates (``"\\u0000"``, ``"\\ud800"``) are valid JSON escapes
      but cannot be stored in Postgres text or encoded as UTF-8;
    - the same characters in the query string;
    - a body that is not a JSON object (``[]``, ``null``, ``1``), trailing data after it, or an
      object with a key twice at any depth (parsers disagree on which one wins).
    """
    for value in request.args.values():
        if _bad_text(value):
            return problem(400, "BAD_REQUEST", "query parameters must be valid text without NUL characters")
    if request.method not in _BODY_METHODS or not request.is_json or takes_raw_body(request.endpoint):
        return None  # a @raw_body view checks its body itself
    data = request.get_data(cache=True)  # bounded by MAX_CONTENT_LENGTH
    if not data:
        return None  # no body: {} where every field is optional
    if json.detect_encoding(data) not in ("utf-8", "utf-8-sig"):
        # RFC 8259: JSON between systems is UTF-8. The parser would accept UTF-16/32, which the
        # byte-level nesting check below cannot read.
        return problem(400, "BAD_REQUEST", "JSON request bodies must be UTF-8")
    if json_depth(data) > MAX_JSON_DEPTH:
        return problem(400, "BAD_REQUEST", f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        body = json.loads(data, parse_constant=_not_json, object_pairs_hook=_unique_keys)
    except _NotJson:
        return problem(400, "BAD_REQUEST", "NaN, Infinity and -Infinity are not JSON")
    except _DuplicateKey as exc:
        return problem(400, "BAD_REQUEST", f"duplicate key in a JSON object: {exc}")
    except (ValueError, RecursionError):  # JSONDecodeError, undecodable UTF-8, numbers too long
        return problem(400, "BAD_REQUEST", "malformed JSON request body")
    if not isinstance(body, dict):
        return problem(400, "BAD_REQUEST", "the request body must be a JSON object")
    if _bad_text(body):
        return problem(400, "BAD_REQUEST", "JSON strings must be valid text without NUL characters")
    return None


def _no_fields_where_none_are_taken() -> Response | None:
    """A JSON body with fields sent to an API action that declares no body (pause, rotate-secret,
    logout, a DELETE…) is a 422 naming them, as a declared body's unknown fields are (API.md
    "Errors": unknown fields are rejected): a client that sends ``{"reason": …}`` to pause a
    schedule learns that it was not taken instead of a 200 that ignored it. ``{}`` and no body
    are fine. Runs after ``_refuse_hostile_input``: the body is one JSON object by now."""
    if (
        request.method not in _BODY_METHODS
        or not request.path.startswith(API_PATH)
        or not request.is_json
        or takes_raw_body(request.endpoint)
    ):
        return None
    view = current_app.view_functions.get(request.endpoint or "")
    declared = getattr(view, "_apidoc", {}).get("arguments", {}).get("parameters", [])
    if any(parameter.get("in") == "json" for parameter in declared):
        return None  # its schema refuses unknown fields itself
    body = request.get_json(silent=True)
    if not body:
        return None
    return problem(
        422,
        "VALIDATION_ERROR",
        "request validation failed",
        errors={name: ["Unknown field."] for name in body},
    )


class _NotJson(ValueError):
    pass


def _not_json(constant: str) -> float:
    # Python's parser takes NaN and ±Infinity; RFC 8259 has no such literals: malformed JSON (400).
    raise _NotJson(constant)


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Python keeps the last of a repeated key, other parsers (and a proxy or WAF before us) the
    # first: {"amount": 1, "amount": 100000} would mean different things to each.
    obj = dict(pairs)
    if len(obj) != len(pairs):
        (key, _count), *_ = Counter(k for k, _ in pairs).most_common(1)
        raise _DuplicateKey(repr(key[:64]))
    return obj


def _bad_text(value: object) -> bool:
    if isinstance(value, str):
        return _UNSTORABLE.search(value) is not None
    if isinstance(value, dict):
        return any(_bad_text(k) or _bad_text(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_bad_text(v) for v in value)
    return False


def _security_headers(response: Response) -> Response:
    h = response.headers
    h["X-Content-Type-Options"] = "nosniff"
    h["Referrer-Policy"] = "no-referrer"
    h["X-Frame-Options"] = "DENY"
    if response.mimetype in ("application/json", "application/problem+json"):
        h["Content-Security-Policy"] = "default-src 'none'; frame-ancestors 'none'"
    if request.path.startswith(API_PATH) or request.path in ("/healthz", "/readyz"):
        # Auth and money answers must never be cached by a browser or a proxy.
        h["Cache-Control"] = "no-store"
        h["Pragma"] = "no-cache"
    if settings().app_env == "production":
        h["Strict-Transport-Security"] = "max-age=63072000; includeSubDomains"
    return response


def _no_type_without_content(response: Response) -> Response:
    # A 204 has no body (RFC 9110), so nothing for a Content-Type to describe; the response
    # layer labels every answer JSON.
    if response.status_code == 204:
        response.headers.pop("Content-Type", None)
    return response


def _init_cors(app: Flask, origins: frozenset[str]) -> None:
    """Allow only the configured origins, without credentials; without CORS_ORIGINS no CORS header is ever sent."""
    if not origins:
        return
    CORS(
        app,
        origins=sorted(origins),
        methods=CORS_ALLOW_METHODS,
        allow_headers=CORS_ALLOW_HEADERS,
        expose_headers=CORS_EXPOSE_HEADERS,
        max_age=CORS_MAX_AGE_SECONDS,
        supports_credentials=False,
        # Default True: a request without Origin would get every allowed origin listed back.
        always_send=False,
    )
    app.after_request(_vary_on_origin)


def _vary_on_origin(response: Response) -> Response:
    # flask-cors adds "Vary: Origin" only when more than one origin is configured and this one is
    # allowed; a cache must not hand one origin's answer (with or without the CORS headers) to another.
    if "Origin" in request.headers:
        response.vary.add("Origin")
    return response


def init_app(app: Flask) -> None:
    """Before the rate limiter: its key functions may read the JSON body."""
    hops = app.extensions["bank"].settings.trusted_proxy_hops
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
    # gunicorn's request line and header limits under any server (granian has none).
    app.wsgi_app = RequestLimits(app.wsgi_app)  # type: ignore[method-assign]
    app.before_request(_body_limit)  # before anything reads the body
    app.before_request(_json_bodies_only)  # before the auth, the limiter and the view
    app.before_request(_refuse_hostile_input)
    app.before_request(_no_fields_where_none_are_taken)
    app.after_request(_security_headers)
    app.after_request(_no_type_without_content)
    _init_cors(app, app.extensions["bank"].settings.cors_origins)
