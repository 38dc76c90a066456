"""The OpenAPI document as a partner's client generator reads it (issue 29), and its committed snapshot.

Every operation has a stable operationId, a summary, a description and examples; every status it
can answer is declared with ProblemOut, every response header is described; response schemas list
what they always carry as ``required``; nullable references are "that or null" (no free-form
object); enums are shared components. The served document equals tests/snapshots/openapi.json
(refresh: ``python -m web.openapi_snapshot``), so every change to the contract shows in review.
The answers match it: a method a URL does not take is a 405 with ``Allow``; schemathesis checks
statuses, headers and bodies against the document in tests/integration/test_fuzz.py and below.
"""

from __future__ import annotations

import difflib
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from core.errors import DomainError
from tests.integration.test_api import login
from tests.profiles import examples
from web.openapi_snapshot import REFRESH, SNAPSHOT, document, render
from web.openapi_spec import ENUMS, PROBLEM_CODES
from web.problems import DOMAIN_STATUSES

API = "/api/v1"
METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture
def spec(app: Any) -> dict[str, Any]:
    return document(app)


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                yield method.upper(), path, item[method]


def resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        kind, name = node["$ref"].split("/")[-2:]
        node = spec["components"][kind][name]
    return node


def walk(node: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield where, node
        for key, value in node.items():
            yield from walk(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{where}/{i}")


def test_the_document_equals_its_committed_snapshot(app: Any) -> None:
    served = render(document(app))
    committed = SNAPSHOT.read_text(encoding="utf-8") if SNAPSHOT.exists() else ""
    if served != committed:
        diff = "".join(difflib.unified_diff(committed.splitlines(True), served.splitlines(True), "snapshot", "served"))
        pytest.fail(f"the OpenAPI document changed: review the diff and run `{REFRESH}`\n{diff[:6000]}")


def test_every_operation_has_an_id_a_summary_a_description_and_examples(spec: dict[str, Any]) -> None:
    ids = [op["operationId"] for _, _, op in operations(spec)]
    assert len(ids) == len(set(ids)) >= 45
    assert {"createTransfer", "captureTransfer", "getStatement", "getTransfer", "createRefund"} <= set(ids)
    for method, path, op in operations(spec):
        where = f"{method} {path}"
        assert op["operationId"][0].islower() and op["operationId"].isalnum(), where
        assert op["summary"] and op["description"], where
        body = op.get("requestBody", {}).get("content", {}).get("application/json")
        if body is not None:
            assert "example" in body, where
        answers = [resolve(spec, r) for status, r in op["responses"].items() if status.startswith("2")]
        for answer in answers:
            for media_type, content in answer.get("content", {}).items():
                assert media_type != "application/json" or "example" in content, where


def test_every_status_an_operation_can_answer_is_a_declared_problem(spec: dict[str, Any]) -> None:
    for method, path, op in operations(spec):
        where, responses = f"{method} {path}", op["responses"]
        assert "default" not in responses, where  # every status named, none left to a catch-all
        if op["security"]:
            assert {"401", "403"} <= responses.keys(), where
        if "{" in path:
            assert "404" in responses, where
        if "requestBody" in op:
            assert {"400", "413", "415", "422"} <= responses.keys(), where
        for status, response in responses.items():
            if int(status) >= 400:
                content = resolve(spec, response)["content"]["application/problem+json"]
                assert content["schema"] == {"$ref": "#/components/schemas/ProblemOut"}, (where, status)
    transfer = spec["paths"][f"{API}/transfers"]["post"]["responses"]
    assert {"409", "423", "429", "503"} <= transfer.keys()
    assert "406" in spec["paths"][f"{API}/accounts/{{account_id}}/statement"]["get"]["responses"]


def test_every_response_header_is_described(spec: dict[str, Any]) -> None:
    for method, path, op in operations(spec):
        for status, response in op["responses"].items():
            headers = resolve(spec, response).get("headers", {})
            assert "X-Request-ID" in headers, (method, path, status)
    create = spec["paths"][f"{API}/transfers"]["post"]["responses"]
    assert {"Location", "X-RateLimit-Limit", "X-RateLimit-Remaining"} <= create["202"]["headers"].keys()
    assert "Idempotent-Replayed" not in create["202"]["headers"]
    assert {"Location", "Idempotent-Replayed"} <= create["200"]["headers"].keys()
    assert "Retry-After" in resolve(spec, create["429"])["headers"]
    assert "Retry-After" in resolve(spec, create["503"])["headers"]
    statement = spec["paths"][f"{API}/accounts/{{account_id}}/statement"]["get"]["responses"]["200"]
    assert {"application/json", "text/csv"} <= statement["content"].keys()
    assert "Content-Disposition" in statement["headers"]


def test_response_schemas_require_what_they_always_carry(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    transfer = schemas["TransferOut"]
    assert set(transfer["required"]) == set(transfer["properties"])
    assert set(schemas["StatementOut"]["required"]) == set(schemas["StatementOut"]["properties"]) - {"next_cursor"}
    for name, schema in schemas.items():
        if name.endswith("Out") or name.endswith(("Page", "List")):
            assert "required" in schema, name
    # No free-form object standing for a nullable reference: the null branch is exactly null.
    for where, node in walk(spec):
        assert "anyOf" not in node, where
        for branch in node.get("oneOf", []):
            if "$ref" not in branch:
                assert branch.get("enum") == [None], where
    root = schemas["TransferAuditOut"]["properties"]["root"]
    assert root["oneOf"][0] == {"$ref": "#/components/schemas/AuditRootOut"}


def test_enums_are_shared_components(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    for name, values in ENUMS.items():
        assert schemas[name]["enum"] == list(values), name
    shared = {frozenset(values) for values in ENUMS.values()}
    for where, node in walk(spec["paths"]):
        if "enum" in node:
            assert frozenset(v for v in node["enum"] if v is not None) not in shared, where
    for where, node in walk({k: v for k, v in schemas.items() if k not in ENUMS}):
        if "enum" in node and node.get("type") == "string":
            assert frozenset(v for v in node["enum"] if v is not None) not in shared, where
    assert schemas["ProblemOut"]["properties"]["code"] == {"$ref": "#/components/schemas/ProblemCode"}
    assert "PaginationMetadata" not in schemas


def test_every_problem_code_the_api_can_send_is_in_the_enum() -> None:
    assert set(DOMAIN_STATUSES) <= set(PROBLEM_CODES)
    codes = {cls.code for cls in _subclasses(DomainError)}
    assert codes <= set(PROBLEM_CODES), codes - set(PROBLEM_CODES)


def _subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    return found.union(*(_subclasses(c) for c in found)) if found else found


def test_the_problem_extension_members_are_declared(spec: dict[str, Any]) -> None:
    problem = spec["components"]["schemas"]["ProblemOut"]["properties"]
    assert {"errors", "challenge_id", "refundable", "limit", "limit_amount", "requested", "checks"} <= problem.keys()


def test_a_method_a_url_does_not_take_is_a_405_with_allow(client: Any, spec: dict[str, Any]) -> None:
    """Every path of the document, every method it does not list: 405, problem+json, and Allow
    naming exactly the listed methods (RFC 9110; schemathesis' unsupported_method check)."""
    for path, item in spec["paths"].items():
        url = re.sub(r"{[^}]+}", str(uuid.uuid4()), path.replace("{n}", "1").replace("{line}", "1"))
        listed = {m.upper() for m in METHODS if m in item}
        for method in set(m.upper() for m in METHODS) - listed:
            r = client.open(url, method=method, json={})
            assert r.status_code == 405, (method, url, r.status_code)
            assert r.headers["Content-Type"] == "application/problem+json", (method, url)
            allowed = set(r.headers["Allow"].replace(" ", "").split(","))
            assert allowed - {"HEAD", "OPTIONS"} == listed, (method, url, allowed)


def test_text_rules_are_in_the_schema(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    assert schemas["RegisterIn"]["properties"]["full_name"]["pattern"] == "^[^\\u0000]*$"
    key = spec["paths"][f"{API}/transfers"]["post"]["parameters"][0]
    assert key["name"] == "Idempotency-Key" and key["schema"]["pattern"] == "^[!-~]([ -~]*[!-~])?$"


CHECKS = [status_code_conformance, content_type_conformance, response_headers_conformance, response_schema_conformance]


@pytest.mark.slow
def test_answers_conform_to_the_document_headers_included(app: Any, client: Any, make_customer: Any) -> None:
    """Schema-valid and schema-invalid requests to the read operations of a real customer: every
    answer is a declared status with its declared content type, body and required headers."""
    headers = login(client, make_customer().email)
    schema = schemathesis.openapi.from_wsgi(f"{API}/openapi.json", app)
    reads = [
        result.ok()
        for result in schema.get_all_operations()
        if result.ok().method.upper() == "GET" and not result.ok().path.startswith(f"{API}/admin")
    ]
    assert len(reads) >= 15
    failures = []
    for operation in reads:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=examples(6),
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                case.headers = {**(case.headers or {}), **headers}
                response = case.call()
                case.validate_response(response, checks=CHECKS)

            try:
                run()
            except Unsatisfiable:  # nothing to negate (no parameters)
                pass
            except Exception as exc:  # report every operation, not the first
                failures.append(f"{mode.value} {operation.method.upper()} {operation.path}: {exc}"[:3000])
    assert failures == [], "\n\n".join(failures)


def test_the_snapshot_is_valid_json_of_the_same_version(spec: dict[str, Any]) -> None:
    committed = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    assert committed["openapi"] == spec["openapi"] == "3.0.3"
