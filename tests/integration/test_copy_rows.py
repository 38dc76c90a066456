"""copy_rows names its table and columns as SQL identifiers (psycopg.sql.Identifier), not by
pasting text into the statement: a reserved word or a name that needs quoting still works."""

from __future__ import annotations

from sqlalchemy import text

from core.db import copy_rows


def test_reserved_and_quoted_names_are_identifiers(sessions) -> None:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        s.execute(text('CREATE TEMP TABLE "Copy Probe" ("order" int, "select" text, "Mixed Case" text)'))
        copy_rows(
            s, "Copy Probe", ("order", "select", "Mixed Case"), [(1, "a", "x"), (2, "b); DROP TABLE users; --", "y")]
        )
        rows = s.execute(text('SELECT "order", "select", "Mixed Case" FROM "Copy Probe" ORDER BY "order"')).all()
    assert [tuple(r) for r in rows] == [(1, "a", "x"), (2, "b); DROP TABLE users; --", "y")]
