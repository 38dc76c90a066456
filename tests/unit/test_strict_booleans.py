"""Every boolean a request body takes is JSON true/false only (issue 19): marshmallow's Boolean takes
1, "true", "yes"…, and ``truthy={True}`` still takes 1 (1 == True). An input schema (a ``Strict``
one) that declares a plain Boolean fails here, so a new endpoint cannot bring the loophole back."""

from __future__ import annotations

import importlib
import pkgutil

import marshmallow as ma
import pytest
from marshmallow import fields

import web
from web.schemas import Strict, StrictBoolean


def input_schemas() -> list[type[ma.Schema]]:
    for module in pkgutil.iter_modules(web.__path__):
        importlib.import_module(f"web.{module.name}")  # schemas declared next to their views too
    found: list[type[ma.Schema]] = []
    todo: list[type[ma.Schema]] = [Strict]
    while todo:
        schema = todo.pop()
        found.append(schema)
        todo.extend(schema.__subclasses__())
    return found


def test_there_are_input_schemas_with_booleans() -> None:
    names = {s.__name__ for s in input_schemas()}
    assert {"TransferIn", "BatchIn", "BatchItemIn", "OtpVerifyIn", "OtpSettingIn"} <= names


@pytest.mark.parametrize("schema", input_schemas(), ids=lambda s: s.__name__)
def test_input_booleans_are_strict(schema: type[ma.Schema]) -> None:
    loose = [
        name
        for name, field in schema._declared_fields.items()
        if isinstance(field, fields.Boolean) and not isinstance(field, StrictBoolean)
    ]
    assert loose == [], f"{schema.__name__}: use StrictBoolean for {loose}"


@pytest.mark.parametrize("value", [1, 0, "true", "false", "yes", "on", None])
def test_strict_boolean_refuses_everything_but_true_and_false(value: object) -> None:
    field = StrictBoolean()
    with pytest.raises(ma.ValidationError):
        field.deserialize(value)
    assert field.deserialize(True) is True and field.deserialize(False) is False
