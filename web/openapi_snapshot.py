"""The committed snapshot of /api/v1/openapi.json, so that every change to the contract shows in review.

``python -m web.openapi_snapshot`` rewrites tests/snapshots/openapi.json from the app;
tests/integration/test_openapi_contract.py fails while the served document differs from it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from flask import Flask

SNAPSHOT = Path(__file__).resolve().parent.parent / "tests" / "snapshots" / "openapi.json"
REFRESH = "python -m web.openapi_snapshot"


def document(app: Flask) -> dict[str, Any]:
    """The document as a client downloads it."""
    response = app.test_client().get("/api/v1/openapi.json")
    assert response.status_code == 200, response.status_code
    return response.get_json()


def render(doc: dict[str, Any]) -> str:
    """Stable text: sorted keys, one member a line, so a diff shows exactly what changed."""
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> int:
    import logging

    from web import create_app

    logging.disable(logging.INFO)  # the request log line of the one GET
    text = render(document(create_app()))
    SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
    changed = not SNAPSHOT.exists() or SNAPSHOT.read_text(encoding="utf-8") != text
    SNAPSHOT.write_text(text, encoding="utf-8")
    print(f"{SNAPSHOT}: {'updated' if changed else 'unchanged'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
