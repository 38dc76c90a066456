"""README's curl flow is examples/curl-flow.sh, word for word, and it runs as written."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.factories import PASSWORD

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "curl-flow.sh"


def _script_body() -> str:
    """The script as README shows it: everything after the shebang and its comment lines."""
    lines = SCRIPT.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    return "\n".join(lines[start:]).strip()


def test_readme_shows_the_script() -> None:
    assert _script_body() in (ROOT / "README.md").read_text()


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="needs curl and jq")
def test_curl_flow_runs_as_written_twice(api_url, workers, admin_user) -> None:  # type: ignore[no-untyped-def]
    env = {**os.environ, "API": f"{api_url}/api/v1", "ADMIN_EMAIL": admin_user.email, "ADMIN_PASSWORD": PASSWORD}
    for _ in range(2):  # fresh emails and keys each run: it never collides with itself
        run = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stdout + run.stderr
        out = run.stdout
        assert "idempotent-replayed: true" in out.lower()
        assert ": COMPLETED" in out
        assert '{"currency":"USD","balance":7490,"available_balance":7490}' in out
        assert ": HELD" in out and '{"balance":7490,"available_balance":3490}' in out  # the hold reserves
        assert '{"status":"COMPLETED","amount":4000,"captured_amount":3000}' in out
        assert out.count("batch item") == 2 and "refund " in out
        assert ": FAILED" not in out and ": PENDING" not in out
        # 10,000 in; 25.10, 30.00 (captured), 5.00 and 7.00 out; 10.00 refunded: six entries.
        assert '{"opening_balance":0,"closing_balance":4290,"entries":6}' in out
        assert "created_at,transfer_id,amount,balance_after,reference" in out.replace(" ", "")
