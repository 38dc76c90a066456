"""Flask's JSON responses (flask-smorest's, a view's dict) written by orjson.

The same bytes a client parses as Flask's default provider wrote, made in C: sorted keys, compact
separators (indented in debug), the trailing newline, datetimes and dataclasses through Flask's own
``default`` (so a datetime stays an HTTP date wherever one is not formatted by a schema). What
orjson cannot write (an integer past 64 bits) falls back to the default provider. Only responses:
request bodies are parsed by the hardening checks and webargs with the standard library.
"""

from __future__ import annotations

from typing import Any, cast

import orjson
from flask import Response
from flask.json.provider import DefaultJSONProvider

_OPTIONS = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_NON_STR_KEYS  # the OpenAPI document's responses are keyed by int status codes
    | orjson.OPT_PASSTHROUGH_DATETIME  # to Flask's default: an HTTP date, as before
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_APPEND_NEWLINE
)


class OrjsonProvider(DefaultJSONProvider):
    def response(self, *args: Any, **kwargs: Any) -> Response:
        obj = self._prepare_response_obj(args, kwargs)
        indent = (self.compact is None and self._app.debug) or self.compact is False
        try:
            body = orjson.dumps(obj, default=self.default, option=_OPTIONS | (orjson.OPT_INDENT_2 if indent else 0))
        except orjson.JSONEncodeError:
            return cast(Response, super().response(obj))
        return Response(body, mimetype=self.mimetype)  # the app's response_class is Flask's own
