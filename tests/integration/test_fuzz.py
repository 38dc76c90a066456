"""Fuzzing the whole API from its OpenAPI spec with schemathesis (in-process, real Postgres and Redis).

Every operation gets schema-valid and schema-invalid requests with a valid token (a customer's; an
admin's for /admin). Nothing may answer 5xx, every error must be problem+json, and every response
must match the spec (status, content type, body schema). Bounded and deterministic: a fixed number of
examples per operation, derandomized, no example database, so it is not flaky and takes seconds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
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

pytestmark = pytest.mark.slow

EXAMPLES = {GenerationMode.POSITIVE: 12, GenerationMode.NEGATIVE: 8}
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


@pytest.fixture(scope="module")
def mint(app, sessions, settings_):  # type: ignore[no-untyped-def]
    """A fresh token per request: the fuzzer may log out, change the password or lock the PIN."""
    from tests.factories import customer
    from web.security import issue_tokens

    people = {"customer": customer(sessions, settings_).user, "admin": admin(sessions)}

    def token(who: str) -> str:
        with app.test_request_context():
            return str(issue_tokens(people[who])["access_token"])

    return token


@pytest.fixture(scope="module")
def settings_(settings):  # type: ignore[no-untyped-def]
    return settings


def test_fuzz_every_operation(app, mint: Callable[[str], str]) -> None:
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25
    failures: list[str] = []
    for operation in operations:
        who = "admin" if operation.path.startswith(f"{API}/admin") else "customer"
        for mode, examples in EXAMPLES.items():
            failure = _fuzz(operation, mode, examples, lambda who=who: mint(who))  # type: ignore[misc]
            if failure:
                failures.append(f"{mode.value} {operation.method.upper()} {operation.path}: {failure}")
    assert failures == [], "\n\n".join(failures)


def _fuzz(operation: Any, mode: GenerationMode, examples: int, token: Callable[[], str]) -> str | None:
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
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token()}"}
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
