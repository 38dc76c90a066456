"""README's curl flow is examples/curl-flow.sh, word for word, inside a subshell; the script runs as written,
and the README block pasted into an interactive shell runs too and leaves that shell as it was."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.factories import PASSWORD

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "curl-flow.sh"
# After the pasted block: a failing command, then the options a user's shell would be left with.
AFTER_PASTE = 'false\necho "shell still open; set: $-; $(set -o | grep -E "^(errexit|nounset|pipefail) ")"\n'


def _script_body() -> str:
    """The script as README shows it: everything after the shebang and its comment lines."""
    lines = SCRIPT.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    return "\n".join(lines[start:]).strip()


def _readme_block() -> str:
    """The README's fenced block that holds the flow."""
    blocks = re.findall(r"```sh\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)
    return next(block for block in blocks if "set -euo pipefail" in block)


def test_readme_shows_the_script_in_a_subshell() -> None:
    assert _readme_block() == f"(\n{_script_body()}\n)"


def _check_flow(out: str) -> None:
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
    # 12. a credit line used (Alice below zero), then a daily limit refusing a transfer
    assert '{"credit_limit":5000,"room_today":9000}' in out
    assert '{"amount":8000,"status":"COMPLETED","failure_code":null,"limit":null}' in out
    assert '{"amount":1200,"status":"FAILED","failure_code":"LIMIT_EXCEEDED","limit":"daily_outgoing"}' in out
    assert '{"balance":-3710,"credit_limit":5000,"available_balance":1290}' in out


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="needs curl and jq")
def test_curl_flow_runs_as_a_script_and_pasted(api_url, workers, admin_user, tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {**os.environ, "API": f"{api_url}/api/v1", "ADMIN_EMAIL": admin_user.email, "ADMIN_PASSWORD": PASSWORD}
    # Fresh emails and keys each run: it never collides with itself.
    script = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120)
    assert script.returncode == 0, script.stdout + script.stderr
    _check_flow(script.stdout)

    # Pasted into an interactive shell (its own rc files skipped, run from an empty directory: the CSV
    # statement is not downloaded, but keep the user's directory clean anyway).
    pasted = subprocess.run(
        ["bash", "--norc", "--noprofile", "-i"],
        input=_readme_block() + "\n" + AFTER_PASTE,
        env={**env, "PS1": "", "PS2": ""},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    _check_flow(pasted.stdout)
    assert "shell still open" in pasted.stdout, pasted.stdout + pasted.stderr
    still_open = pasted.stdout[pasted.stdout.index("shell still open") :]
    assert re.findall(r"(errexit|nounset|pipefail)\s+(on|off)", still_open) == [
        ("errexit", "off"),
        ("nounset", "off"),
        ("pipefail", "off"),
    ]
