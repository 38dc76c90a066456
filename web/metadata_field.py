"""The ``metadata`` field of request and response bodies (limits in core/metadata.py)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import fields

from core import metadata

DESCRIPTION = (
    f"The client's own data: at most {metadata.MAX_KEYS} string keys of 1-{metadata.MAX_KEY_LENGTH} characters,"
    f" string values of at most {metadata.MAX_VALUE_LENGTH}; filter with GET /transfers?metadata[KEY]=VALUE"
)


class MetadataIn(fields.Dict):
    """A JSON object of string keys and values; a refusal names the offending key
    (``errors.metadata.KEY``), or ``errors.metadata`` when the object as a whole is wrong."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("metadata", {})
        kwargs["metadata"] = {"description": DESCRIPTION, "maxProperties": metadata.MAX_KEYS, **kwargs["metadata"]}
        super().__init__(keys=fields.String(), values=fields.String(), allow_none=True, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:  # a dict, or None
        wrong = metadata.problems(value)
        if wrong:
            raise ma.ValidationError(wrong)
        return dict(value) or None


def metadata_out() -> fields.Function:
    """The stored metadata as returned: ``{}`` when there is none."""
    return fields.Function(
        lambda resource: metadata.shown(metadata.stored_metadata(resource)),
        metadata={"type": "object", "additionalProperties": {"type": "string"}, "description": DESCRIPTION},
    )
