"""The OpenAPI contract, completed in one place for every operation (issue 29).

The views declare what is theirs (arguments, success responses, a few alternative responses);
this apispec plugin adds what follows from rules shared by all of them, so that a new endpoint is
documented like the others without copying fragments:

- a stable ``operationId`` (the view's name in camelCase, or the name given in ``OPERATION_IDS``),
  a summary and a description that states the rules (authentication, idempotency, rate limit);
- every error status the operation can answer, each a ``ProblemOut`` (``ERROR_STATUSES``);
- the response headers (``X-Request-ID`` everywhere, ``Location``, ``Idempotent-Replayed``,
  rate-limit headers, ``Content-Disposition``); the error responses' own headers (``Retry-After``,
  ``WWW-Authenticate``) are on the shared error components (web/docs.py);
- ``required`` on response schemas (every field a response always carries), a nullable reference as
  exactly "that or null" (``_nullable``), and the enums (currency, statuses, problem codes) as shared
  components;
- an example of every JSON request body and response, built from its schema;
- string rules the server enforces outside marshmallow (no NUL character) as a ``pattern``.

Client generators (openapi-python-client, openapi-typescript) and schemathesis read the result;
tests/integration/test_openapi_contract.py and tests/integration/test_openapi_clients.py hold it.
"""

from __future__ import annotations

import copy
import http
import re
import uuid
from typing import Any

import marshmallow as ma
from apispec import APISpec, BasePlugin

from core.events import EventType
from core.models import AccountStatus, KycStatus, Role, TransferKind, TransferStatus, UserStatus
from core.money import CURRENCIES
from core.webhooks.models import DeliveryStatus
from web import limits
from web.problems import _CODES, DOMAIN_STATUSES, PROBLEM_JSON
from web.schemas import KycDecision, Strict

JSON = "application/json"

# Every code a problem's ``code`` may hold: the domain's, the HTTP layer's, and a 5xx's.
PROBLEM_CODES: tuple[str, ...] = tuple(sorted({*DOMAIN_STATUSES, *_CODES.values(), "INTERNAL_ERROR", "ERROR"}))

# Enums published once, as components, and referenced wherever their values appear.
ENUMS: dict[str, tuple[str, ...]] = {
    "Currency": tuple(sorted(CURRENCIES)),
    "TransferStatus": tuple(m.value for m in TransferStatus),
    "TransferKind": tuple(m.value for m in TransferKind),
    "AccountStatus": tuple(m.value for m in AccountStatus),
    "KycStatus": tuple(m.value for m in KycStatus),
    "UserStatus": tuple(m.value for m in UserStatus),
    "Role": tuple(m.value for m in Role),
    "KycDecision": tuple(m.value for m in KycDecision),
    "DeliveryStatus": tuple(m.value for m in DeliveryStatus),
    "EventType": tuple(m.value for m in EventType),
    "ProblemCode": PROBLEM_CODES,
}
_ENUM_BY_VALUES = {frozenset(values): name for name, values in ENUMS.items()}
# Output fields that hold one of these enums but are declared as plain strings.
_OUTPUT_ENUM_FIELDS = {"currency": "Currency", "code": "ProblemCode"}

# Operation ids where the view's name would not read well in a client (``client.profile()``).
OPERATION_IDS: dict[str, str] = {
    "me.profile": "getMe",
    "me.put_pin": "setPin",
    "me.put_password": "changePassword",
    "me.post_otp": "setOtp",
    "auth.refresh": "refreshTokens",
    "auth.verify_otp": "verifyOtp",
    "ops.healthz": "getHealth",
    "ops.readyz": "getReadiness",
    "admin.freeze": "freezeAccount",
    "admin.unfreeze": "unfreezeAccount",
    "admin.put_bank_limits": "setBankLimits",
    "admin.list_audit": "listAuditRecords",
    "accounts.put_own_limits": "setOwnLimits",
    "transfer_batches.create_batch": "createTransferBatch",
    "transfer_audit.get_root_n": "getAuditRoot",
    "transfer_audit.get_latest_root": "getLatestAuditRoot",
}

SUMMARIES: dict[str, str] = {
    "register": "Register a customer and open their first account",
    "login": "Log in with email and password",
    "logout": "Revoke the current token",
    "refreshTokens": "Exchange a refresh token for new tokens",
    "verifyOtp": "Answer a one-time-code challenge",
    "getMe": "The caller's profile",
    "setPin": "Set or change the transaction PIN",
    "changePassword": "Change the password",
    "setOtp": "Turn one-time codes on or off",
    "listDevices": "Trusted devices",
    "deleteDevice": "Forget a trusted device",
    "listAccounts": "The caller's accounts",
    "openAccount": "Open an account",
    "getAccount": "One account",
    "getBalanceAsOf": "An account's balance at an instant",
    "listEntries": "An account's ledger entries",
    "getLimits": "An account's spending limits and usage",
    "setOwnLimits": "Set the owner's own spending limits",
    "createMonitor": "Add a balance monitor",
    "listMonitors": "An account's balance monitors",
    "deleteMonitor": "Remove a balance monitor",
    "getStatement": "An account statement for a period (JSON or CSV)",
    "createTransfer": "Send money (or hold it) between accounts",
    "listTransfers": "List transfers",
    "getTransfer": "One transfer (poll it until it settles)",
    "captureTransfer": "Capture a hold",
    "voidTransfer": "Void a hold",
    "createRefund": "Refund a completed transfer",
    "createTransferBatch": "Send up to a batch of transfers at once",
    "getTransferAudit": "A transfer's audit records with their Merkle proofs",
    "getLatestAuditRoot": "The newest sealed audit root",
    "getAuditRoot": "One sealed audit root",
    "listUsers": "List users (admin)",
    "decideKyc": "Approve or reject a customer's KYC (admin)",
    "createDeposit": "Deposit money into an account (admin)",
    "freezeAccount": "Freeze an account (admin)",
    "unfreezeAccount": "Unfreeze an account (admin)",
    "setBankLimits": "Set the bank's limits and credit line of an account (admin)",
    "listAuditRecords": "The audit log (admin)",
    "createEndpoint": "Register a webhook endpoint",
    "listEndpoints": "The caller's webhook endpoints",
    "getEndpoint": "One webhook endpoint",
    "deleteEndpoint": "Delete a webhook endpoint",
    "listDeliveries": "An endpoint's webhook deliveries",
    "retryDelivery": "Retry a webhook delivery",
    "rotateSecret": "Rotate an endpoint's signing secret",
    "getHealth": "Liveness",
    "getReadiness": "Readiness: the database and Redis answer",
}

# The rules of the main operations, beside what the views' docstrings say (API.md is the source).
RULES: dict[str, str] = {
    "register": "The user starts `PENDING` KYC and `INACTIVE`, with one `INACTIVE` account of `currency` (default"
    " USD) and balance 0; an admin's KYC approval activates both. A taken email is `409`.",
    "createTransfer": "Checked before queueing: the caller owns the source, KYC approved, PIN set and right (5 wrong"
    " PINs lock it for 15 minutes: `423` `PIN_LOCKED`), both accounts exist and are `ACTIVE`, currencies match, not"
    " the same account, `per_transfer` limit. Accepted: `202` `PENDING` with `Location`; poll `getTransfer` until"
    " `COMPLETED` or `FAILED` (`failure_code` `INSUFFICIENT_FUNDS`, `LIMIT_EXCEEDED`, `ACCOUNT_INACTIVE`). With"
    " `hold: true` it ends `HELD` instead: capture or void it, or it ends `EXPIRED`.",
    "getTransfer": "The caller owns the source or the destination account (or is an admin); anyone else's is `404`.",
    "captureTransfer": "Source owner or admin; `amount` at most the held amount (default all), the rest released;"
    " ends `COMPLETED`. A transfer that is not `HELD` is `409` `TRANSFER_NOT_HELD`.",
    "voidTransfer": "Source or destination owner, or admin; ends `VOIDED`, the amount released. A transfer that is"
    " not `HELD` is `409` `TRANSFER_NOT_HELD`.",
    "createRefund": "The original's destination owner (or an admin); the original must be a `COMPLETED` transfer."
    " A new transfer of kind `REFUND` back to the original source, settled like any other; refunds never sum to more"
    " than the original (`422` `REFUND_EXCEEDS_AMOUNT` with `refundable`).",
    "getStatement": "The period `[from, to)` (RFC 3339 instants with an offset; `from` before `to`, else `422`)."
    " JSON by default: at most 10,000 entries a page, `next_cursor` while more remain (send the same request with"
    " `cursor`), `closing_balance` on the last page. `Accept: text/csv`: the whole period as one streamed CSV file"
    " (header `created_at,transfer_id,amount,balance_after,reference`). Another `Accept` is `406`.",
    "createDeposit": "Money enters from the bank's settlement account of that currency as a `COMPLETED` transfer.",
    "decideKyc": "`APPROVE` makes the user and their accounts `ACTIVE`.",
    "setPin": "4 to 6 digits; changing an existing PIN needs `current_pin`.",
    "listTransfers": "Newest first, a page of `limit` with `next_cursor` (an opaque cursor; a made-up one is `422`).",
}

# Operations whose body or state can be in conflict (409): an account not ACTIVE, a hold already
# ended, a PIN not set, an account limit, a delivery not retryable.
CONFLICTS = {
    "register",  # the email is taken
    "openAccount",
    "createTransfer",
    "createTransferBatch",
    "captureTransfer",
    "voidTransfer",
    "createRefund",
    "createDeposit",
    "freezeAccount",
    "unfreezeAccount",
    "setPin",
    "retryDelivery",
    "importStatement",  # the same file or camt.053 statement again
    "resolveLine",  # a line already matched or resolved
}
# Lockouts counted in Postgres (core.identity), beside the limiter's own limits (web/limits.py).
LOCKOUTS = {"login", "changePassword", "setOtp", "verifyOtp"}
# Where the view sends Location (the transfer) and, on a replay, Idempotent-Replayed: true.
LOCATION = {"createTransfer", "captureTransfer", "voidTransfer", "createRefund"}
REPLAYS = LOCATION | {"createDeposit"}
NOT_ACCEPTABLE = {"getStatement"}  # content negotiation (Accept)
NOT_FOUND = {"getLatestAuditRoot"}  # no path parameter, but nothing to answer yet (no batch sealed)
# Public operations that check credentials of their own (a password, a one-time code).
CREDENTIALS = {"login", "verifyOtp"}

# Response fields a response may leave out; every other field of a response schema is required.
OPTIONAL_FIELDS: dict[str, set[str]] = {
    "StatementOut": {"next_cursor"},  # only while the period has more entries
    "HealthOut": {"checks"},  # readyz only
    "BatchItemOut": {"transfer", "error"},  # one of the two
}

# Printable text without NUL (which Postgres text cannot store): the API refuses NUL anywhere.
NO_NUL = "^[^\\u0000]*$"

HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-ID": {
        "description": "The request's id (the client's own X-Request-ID if it is safe to log, else a new UUID);"
        " quote it to support.",
        "required": True,
        "schema": {"type": "string", "maxLength": 128},
    },
    "Location": {
        "description": "The transfer's URL (GET it to poll the status).",
        "required": True,
        "schema": {"type": "string", "format": "uri-reference"},
    },
    "Idempotent-Replayed": {
        "description": "`true` when this is the answer to an earlier request with the same Idempotency-Key"
        " (nothing new was done); absent on the first answer.",
        "required": True,
        "schema": {"type": "string", "enum": ["true"]},
    },
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    },
    "X-RateLimit-Limit": {
        "description": "Requests allowed in the limit's window (rate-limited operations).",
        "schema": {"type": "integer"},
    },
    "X-RateLimit-Remaining": {
        "description": "Requests left in the window (rate-limited operations).",
        "schema": {"type": "integer"},
    },
    "X-RateLimit-Reset": {
        "description": "When the window resets, in seconds since the epoch (rate-limited operations).",
        "schema": {"type": "integer"},
    },
    "Content-Disposition": {
        "description": 'With the CSV representation: `attachment; filename="statement-….csv"`.',
        "schema": {"type": "string"},
    },
    "WWW-Authenticate": {
        "description": "`Bearer` (RFC 6750).",
        "schema": {"type": "string"},
    },
}
RATE_LIMIT_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")

# The headers each error status carries, beside X-Request-ID (used by web/docs.py). A 405 carries
# Allow (web/problems.py), but no operation answers it: it is the answer to a method not listed.
ERROR_HEADERS: dict[int, tuple[str, ...]] = {
    401: ("WWW-Authenticate",),
    429: ("Retry-After",),
    503: ("Retry-After",),
}

# Values for examples where the schema alone gives a poor one.
EXAMPLE_VALUES: dict[str, Any] = {
    "email": "ada@example.com",
    "password": "correct horse battery staple",
    "current_password": "correct horse battery staple",
    "new_password": "another long passphrase",
    "full_name": "Ada Lovelace",
    "pin": "1234",
    "current_pin": "4321",
    "code": "123456",
    "currency": "USD",
    "amount": 2500,
    "reference": "invoice 2026-001",
    "url": "https://partner.example/hooks/bank",
    "token_type": "Bearer",
    "access_token": "eyJhbGciOiJIUzI1NiJ9.e30.sig",
    "refresh_token": "eyJhbGciOiJIUzI1NiJ9.e30.sig",
}
_FORMAT_EXAMPLES = {
    "date-time": "2026-01-02T03:04:05.000000Z",
    "email": "ada@example.com",
    "uri": "https://partner.example/hooks/bank",
}


API_DESCRIPTION = """Money moves between accounts as transfers, accepted (`202`) then settled; poll a transfer
(`GET /transfers/{id}`) or take webhooks. Every rule of an operation is in its description and schema.

- **Authentication**: `Authorization: Bearer <access_token>` from `POST /auth/login`; a missing or bad token is `401`.
- **Idempotency**: money movements take an `Idempotency-Key`; the same key and body answer `200` with
  `Idempotent-Replayed: true` and the first answer's resource; a different body under the key is `422`.
- **Errors** are `application/problem+json` (RFC 9457, `ProblemOut`) with a stable `code` (`ProblemCode`);
  every status an operation can answer is listed on it. A method a URL does not take is `405` with `Allow`.
- **Headers**: every response carries `X-Request-ID`; rate-limited operations send `X-RateLimit-*`, and a `429`
  or `503` sends `Retry-After`.
- **Lists** page with an opaque `cursor` (a page's `next_cursor`), never page numbers.
- **Money** is an integer in minor units with an ISO 4217 `currency`.
"""


def operation_id(endpoint: str) -> str:
    """``transfers.create_transfer`` -> ``createTransfer`` unless ``OPERATION_IDS`` names it."""
    if endpoint in OPERATION_IDS:
        return OPERATION_IDS[endpoint]
    head, *rest = endpoint.rsplit(".", 1)[-1].split("_")
    return head + "".join(word.capitalize() for word in rest)


class ContractPlugin(BasePlugin):
    """See the module docstring. Runs after flask-smorest's and marshmallow's plugins."""

    spec: APISpec

    def init_spec(self, spec: APISpec) -> None:
        self.spec = spec
        spec.options.setdefault("info", {}).setdefault("description", API_DESCRIPTION)
        for name, header in HEADERS.items():
            spec.components.header(name, header, lazy=True)  # published where used
        for name, values in ENUMS.items():
            spec.components.schema(name, {"type": "string", "enum": list(values)})

    def schema_helper(self, name: str, definition: dict[str, Any], **kwargs: Any) -> dict[str, Any] | None:
        schema = kwargs.get("schema")
        properties = definition.get("properties")
        if schema is None or not properties:
            return None
        output = not _is_input(name, schema)
        for field, prop in properties.items():
            properties[field] = _complete_property(field, prop, output=output)
        if output and "required" not in definition:
            optional = OPTIONAL_FIELDS.get(name, set())
            definition["required"] = [f for f in properties if f not in optional]
        return None

    def operation_helper(
        self, path: str | None = None, operations: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        rule = kwargs.get("rule")
        if rule is None or not path:
            return
        for method, operation in (operations or {}).items():
            if isinstance(operation, dict):
                self._complete_operation(rule.endpoint, path, method, operation)

    def _complete_operation(self, endpoint: str, path: str, method: str, operation: dict[str, Any]) -> None:
        op_id = operation_id(endpoint)
        operation["operationId"] = op_id
        operation.setdefault("security", [])  # public: declared, not inherited
        authenticated = bool(operation["security"])
        limited = any(endpoint in table for table in (limits.PER_ADDRESS, limits.PER_EMAIL, limits.PER_USER))
        parameters = operation.get("parameters", [])
        for parameter in parameters:
            if isinstance(parameter, dict) and "schema" in parameter:
                parameter["schema"] = _complete_property(parameter.get("name", ""), parameter["schema"], output=False)
        has_body = "requestBody" in operation
        has_query = any(isinstance(p, dict) and p.get("in") == "query" for p in parameters)
        idempotent = any(isinstance(p, dict) and p.get("name") == "Idempotency-Key" for p in parameters)
        takes_pin = has_body and "pin" in self._request_properties(operation)

        statuses: dict[int, str] = {}
        if has_body or has_query or idempotent:
            statuses[400] = "malformed request (JSON syntax, NUL characters, a missing or bad Idempotency-Key)"
            statuses[422] = "a field breaks a rule (`errors` names it)"
        if authenticated:
            statuses[401] = "no valid bearer token"
            statuses[403] = "the caller may not do this (role, KYC, another's resource, wrong PIN)"
        if op_id in CREDENTIALS:
            statuses[401] = "wrong credentials, or `OTP_REQUIRED` (with `challenge_id`)"
        refers = has_body and any(p.get("format") == "uuid" for p in self._request_properties(operation).values())
        if "{" in path or op_id in NOT_FOUND or refers:
            statuses[404] = "not found, or not the caller's"
        if op_id in CONFLICTS or takes_pin:
            statuses[409] = "the resource's state does not allow it"
        if has_body:
            statuses[413] = "body over 64 KiB"
            statuses[415] = "body is not application/json"
        if takes_pin:
            statuses[423] = "`PIN_LOCKED`: too many wrong PINs"
        if limited or op_id in LOCKOUTS:
            statuses[429] = "`RATE_LIMITED`, see Retry-After"
        if op_id in NOT_ACCEPTABLE:
            statuses[406] = "the Accept header names neither representation"
        if op_id != "getHealth":
            statuses[503] = "a dependency is unavailable; retry (same Idempotency-Key)"
        responses = operation.setdefault("responses", {})
        for status in statuses:
            if status not in responses and str(status) not in responses:
                responses[status] = _status_name(status)

        for status, response in responses.items():
            if isinstance(response, dict):
                self._complete_response(op_id, int(status), response, limited=limited)
        self._describe(operation, op_id, endpoint, authenticated, idempotent, limited, statuses)
        body = operation.get("requestBody", {}).get("content", {}).get(JSON)
        if body is not None and "example" not in body and "examples" not in body:
            body["example"] = self.example(body.get("schema", {}), request=True)

    def _complete_response(self, op_id: str, status: int, response: dict[str, Any], *, limited: bool) -> None:
        headers = response.setdefault("headers", {})
        headers.setdefault("X-Request-ID", "X-Request-ID")
        if 200 <= status < 300:
            if op_id in LOCATION:
                headers.setdefault("Location", "Location")
            if op_id in REPLAYS and status == 200:
                headers.setdefault("Idempotent-Replayed", "Idempotent-Replayed")
            if limited:
                for name in RATE_LIMIT_HEADERS:
                    headers.setdefault(name, name)
            if op_id == "getStatement":
                headers.setdefault("Content-Disposition", "Content-Disposition")
        if status >= 400 and "content" not in response:
            response["content"] = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/ProblemOut"}}}
        for media_type, content in response.get("content", {}).items():
            if media_type in (JSON, PROBLEM_JSON) and "example" not in content and "examples" not in content:
                content["example"] = self.example(content.get("schema", {}))

    def _describe(
        self,
        operation: dict[str, Any],
        op_id: str,
        endpoint: str,
        authenticated: bool,
        idempotent: bool,
        limited: bool,
        statuses: dict[int, str],
    ) -> None:
        summary = operation.get("summary") or SUMMARIES.get(op_id) or _words(op_id)
        described = operation.get("description", "")
        if operation.get("summary") and op_id in SUMMARIES:
            # A view's one-line docstring is a rule: keep it in the description, under our summary.
            described = "\n\n".join(filter(None, [operation["summary"], described]))
            summary = SUMMARIES[op_id]
        rules = ["Needs a bearer token." if authenticated else "Public: no token."]
        if idempotent:
            rules.append(
                "Idempotent: send an `Idempotency-Key` (1-255 printable characters); the same key and body"
                " answer `200` with `Idempotent-Replayed: true` and the same resource, a different body `422`."
            )
        if limited:
            rules.append("Rate limited per caller: over the limit `429` with `Retry-After`.")
        errors = "; ".join(f"`{status}` {why}" for status, why in sorted(statuses.items()))
        operation["summary"] = summary
        parts = [RULES.get(op_id, ""), described, " ".join(rules), f"Errors: {errors}."]
        operation["description"] = "\n\n".join(filter(None, parts))

    def _request_properties(self, operation: dict[str, Any]) -> dict[str, Any]:
        schema = operation["requestBody"].get("content", {}).get(JSON, {}).get("schema", {})
        return self._resolve(schema).get("properties", {})

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        ref = schema.get("$ref") if isinstance(schema, dict) else None
        if isinstance(ref, str):
            return self.spec.components.schemas.get(ref.rsplit("/", 1)[-1], {})
        return schema

    def example(self, schema: dict[str, Any], name: str = "", depth: int = 0, *, request: bool = False) -> Any:
        """A value the schema accepts, for documentation (and schemathesis' explicit phase)."""
        schema = self._resolve(schema)
        if depth > 6:
            return None
        if "example" in schema:
            return schema["example"]
        if "allOf" in schema:
            return self.example(schema["allOf"][0], name, depth + 1, request=request)
        if "anyOf" in schema or "oneOf" in schema:
            return self.example((schema.get("anyOf") or schema["oneOf"])[0], name, depth + 1, request=request)
        if "enum" in schema:
            values = [v for v in schema["enum"] if v is not None]
            preferred = EXAMPLE_VALUES.get(name)
            return preferred if preferred in values else (values[0] if values else None)
        kind = schema.get("type")
        if kind == "object":
            properties = schema.get("properties", {})
            # A request shows what it needs (and the usual extras), not every option at once.
            wanted = [f for f in properties if not request or f in schema.get("required", ()) or f in EXAMPLE_VALUES]
            return {f: self.example(properties[f], f, depth + 1, request=request) for f in wanted}
        if kind == "array":
            return [self.example(schema.get("items", {}), name, depth + 1, request=request)]
        preferred = EXAMPLE_VALUES.get(name)
        if (kind == "string" and isinstance(preferred, str)) or (kind == "integer" and isinstance(preferred, int)):
            return preferred
        if kind == "string":
            fmt = schema.get("format")
            if fmt == "uuid":  # one id per field name: a source and a destination differ
                return str(uuid.uuid5(uuid.NAMESPACE_URL, f"bank:{name}"))
            if fmt in _FORMAT_EXAMPLES:
                return _FORMAT_EXAMPLES[fmt]
            return "x" * max(1, int(schema.get("minLength", 1)))
        if kind == "integer":
            return max(int(schema.get("minimum", 0)), min(1, int(schema.get("maximum", 1))))
        if kind == "number":
            return 0
        if kind == "boolean":
            return False
        return None


def _words(op_id: str) -> str:
    """``createScheduledTransfer`` -> "Create scheduled transfer": a summary for an operation that
    has neither a docstring nor an entry in SUMMARIES yet."""
    words = re.findall(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])", op_id)
    return " ".join(words).capitalize()


def _is_input(name: str, schema: Any) -> bool:
    """Input schemas refuse unknown fields (``Strict``) and are named ``…In`` (or ``…Args``); what
    a client sends is never made required by this plugin."""
    cls = schema if isinstance(schema, type) else type(schema)
    return issubclass(cls, Strict) or not issubclass(cls, ma.Schema) or name.endswith(("In", "Args"))


def _status_name(status: int) -> str:
    return http.HTTPStatus(status).name


def _complete_property(name: str, prop: dict[str, Any], *, output: bool) -> dict[str, Any]:
    """One property: a shared enum by reference, nullable without anyOf, strings without NUL."""
    if not isinstance(prop, dict):
        return prop
    prop = copy.copy(prop)
    any_of = prop.get("anyOf")
    if isinstance(any_of, list) and len(any_of) == 2 and any(_is_null_object(s) for s in any_of):
        # apispec's nullable Nested: anyOf [$ref, {type: object, nullable: true}], whose second
        # branch is any object, so generators typed the field as a free-form object.
        ref = next(s for s in any_of if not _is_null_object(s))
        prop.pop("anyOf")
        prop = {**_nullable(ref, "object"), **prop}
    if prop.get("type") == "array" and isinstance(prop.get("items"), dict):
        prop["items"] = _complete_property(name, prop["items"], output=output)
    values = prop.get("enum")
    enum_name = None
    if isinstance(values, list) and prop.get("type") == "string":
        enum_name = _ENUM_BY_VALUES.get(frozenset(v for v in values if v is not None))
    elif output and prop.get("type") == "string" and "format" not in prop and name in _OUTPUT_ENUM_FIELDS:
        enum_name = _OUTPUT_ENUM_FIELDS[name]
    if enum_name is not None:
        nullable = bool(prop.get("nullable")) or (isinstance(values, list) and None in values)
        rest = {k: v for k, v in prop.items() if k not in ("type", "enum", "nullable")}
        ref = {"$ref": f"#/components/schemas/{enum_name}"}
        if not rest and not nullable:
            return ref
        return {**(_nullable(ref, "string") if nullable else {"allOf": [ref]}), **rest}
    if (
        not output
        and prop.get("type") == "string"
        and not {"pattern", "format", "enum"} & prop.keys()
        and not prop.get("readOnly")
    ):
        prop["pattern"] = NO_NUL
    return prop


def _nullable(ref: dict[str, Any], kind: str) -> dict[str, Any]:
    """A reference or null, in OpenAPI 3.0.3: ``nullable`` applies only beside a ``type`` (so
    ``allOf: [$ref]`` + ``nullable`` is not nullable, and Redocly refuses it), and the null branch
    is exactly null (``enum: [null]``), not any object. openapi-python-client reads it as
    ``X | None``, openapi-typescript as ``X | null``."""
    return {"oneOf": [ref, {"type": kind, "nullable": True, "enum": [None]}]}


def _is_null_object(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("nullable") is True and "$ref" not in schema


__all__ = ["ENUMS", "ERROR_HEADERS", "HEADERS", "PROBLEM_CODES", "ContractPlugin", "operation_id"]
