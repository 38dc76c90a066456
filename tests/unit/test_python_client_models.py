"""The Python client's models (clients/python) in step with the server's OpenAPI document: each
model has exactly the fields of its schema in the committed snapshot (tests/snapshots/openapi.json,
itself held equal to the served document by test_openapi_contract), so a field added, dropped or
renamed on either side fails here."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "clients" / "python" / "src"))

from bank_sdk import errors, models  # noqa: E402

SCHEMAS = json.loads((ROOT / "tests" / "snapshots" / "openapi.json").read_text())["components"]["schemas"]


@pytest.mark.parametrize(
    ("model", "schema"), [(models.Transfer, "TransferOut"), (models.Account, "AccountOut"), (models.Event, "EventOut")]
)
def test_each_model_has_its_schemas_fields(model: type, schema: str) -> None:
    assert {f.name for f in dataclasses.fields(model)} == set(SCHEMAS[schema]["properties"])


def test_every_problem_code_of_the_document_has_its_exception() -> None:
    codes = set(SCHEMAS["ProblemCode"]["enum"]) if "ProblemCode" in SCHEMAS else set()
    assert codes, "the document lists its problem codes"
    assert codes <= set(errors.BY_CODE), sorted(codes - set(errors.BY_CODE))
