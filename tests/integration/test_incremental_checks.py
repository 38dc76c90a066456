"""Checks that scale (issue 28 item 3): reconcile and verify-audit run under a statement
timeout of their own, not the API's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from core.check_timeout import limit_statement_time
from tests.factories import fund, seal_all

# The CLI checks run in a subprocess, and the sealer chains only committed transactions.
pytestmark = pytest.mark.commits

ROOT = Path(__file__).resolve().parents[2]
FLASK = str(Path(sys.executable).parent / "flask")


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FLASK, "--app", "web", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_a_check_sets_its_own_statement_timeout_for_its_transaction_only(sessions) -> None:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        app_default = s.execute(text("SHOW statement_timeout")).scalar_one()
    with sessions.begin() as s:
        limit_statement_time(s, 0)
        assert s.execute(text("SHOW statement_timeout")).scalar_one() == "0"
        limit_statement_time(s, 2.5)
        assert s.execute(text("SHOW statement_timeout")).scalar_one() == "2500ms"
    with sessions.begin() as s:
        assert s.execute(text("SHOW statement_timeout")).scalar_one() == app_default
    with pytest.raises(ValueError), sessions.begin() as s:
        limit_statement_time(s, -1)


@pytest.mark.parametrize("command", ["reconcile", "verify-audit"])
def test_the_commands_take_a_statement_timeout_of_their_own(sessions, make_customer, admin_user, command) -> None:  # type: ignore[no-untyped-def]
    """The check takes a timeout of its own (0 = none, the default); the one-statement limit it
    replaces in its transaction is shown by the test above."""
    fund(sessions, admin_user, make_customer().account, 100)
    seal_all(sessions)
    for args in ([], ["--statement-timeout", "0"], ["--statement-timeout", "600"]):
        done = cli(command, *args)
        assert done.returncode == 0, done.stderr
    bad = cli(command, "--statement-timeout", "-1")
    assert bad.returncode == 2
