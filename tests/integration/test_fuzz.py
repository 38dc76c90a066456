"""Fuzzing the whole API from its OpenAPI spec with schemathesis (in-process, real Postgres and Redis).

Every operation gets schema-valid and schema-invalid requests, once with a customer's token and once
with an admin's, each token issued once and alive through the run (logout and password change are
left out: they would revoke it). Nothing may answer 5xx, every error must be problem+json, and every response
must match the spec (status, content type, body schema). Bounded and deterministic: a fixed number of
examples per operation, derandomized, no example database, so it is not flaky and takes seconds.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.authflow import API, PROBLEM
from tests.factories import admin
from tests.profiles import examples

pytestmark = pytest.mark.slow

EXAMPLES = {GenerationMode.POSITIVE: examples(12), GenerationMode.NEGATIVE: examples(8)}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def every_error_is_a_problem(response: Any) -> None:
    if response.status_code < 400:
        return
    assert response.headers.get("content-type", [""])[0] == PROBLEM, (response.status_code, response.headers)
    body = json.loads(response.content)
    assert body["status"] == response.status_code and body["type"] == "about:blank", body
    assert isinstance(body["code"], str) and body["code"].isupper() and body["title"] and body["detail"], body


ROLES = ("customer", "admin")
# Left out so each role's one token lives through the whole run: logging out revokes it and a
# password change revokes every token of the user. Everything else runs with that same token.
LEFT_OUT = {("POST", f"{API}/auth/logout"), ("PUT", f"{API}/me/password")}


@pytest.fixture
def tokens(app, sessions, settings) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """One access token per role, issued once for the test (its users live in the test's transaction)."""
    from tests.factories import customer
    from web.security import issue_tokens

    people = {"customer": customer(sessions, settings).user, "admin": admin(sessions)}
    with app.test_request_context():
        return {who: str(issue_tokens(user)["access_token"]) for who, user in people.items()}


@pytest.mark.parametrize("who", ROLES)
def test_fuzz_every_operation(app, tokens: dict[str, str], who: str) -> None:
    """Every operation, as a customer and as an admin (an admin route as a customer must be a clean
    403, a customer route as an admin whatever the spec says), with one token for the whole run."""
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    every = [result.ok() for result in schema.get_all_operations()]
    operations = [op for op in every if (op.method.upper(), op.path) not in LEFT_OUT]
    assert len(every) - len(operations) == len(LEFT_OUT), "an operation left out is no longer in the spec"
    assert len(operations) >= 25
    failures: list[str] = []
    for operation in operations:
        for mode, count in EXAMPLES.items():
            failure = _fuzz(operation, mode, count, tokens[who])
            if failure:
                failures.append(f"{who} {mode.value} {operation.method.upper()} {operation.path}: {failure}")
    assert failures == [], "\n\n".join(failures)
    # The token lived through the run: nothing the fuzzer sent revoked it.
    me = app.test_client().get(f"{API}/me", headers={"Authorization": f"Bearer {tokens[who]}"})
    assert me.status_code == 200, me.get_data(as_text=True)


def _fuzz(operation: Any, mode: GenerationMode, examples: int, token: str) -> str | None:
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
        response = case.call()
        case.validate_response(response, checks=CHECKS)
        every_error_is_a_problem(response)

    try:
        run()
    except Unsatisfiable:  # nothing to negate (an operation without parameters or body)
        return None
    except (AssertionError, Exception, BaseExceptionGroup) as exc:  # report every operation, not just the first
        return f"{type(exc).__name__}: {exc}"[:4000]
    return None
