"""README "Money in and out": its payout -> file walk-through runs as written against the live API and
workers, and its file is a valid pain.001.001.03 holding the payout."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from lxml import etree

from tests import factories
from tests.e2e.conftest import bearer

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
XSD = ROOT / "tests" / "fixtures" / "iso20022" / "pain.001.001.03.xsd"
NS = {"p": "urn:iso:std:iso:20022:tech:xsd:pain.001.001.03"}


def walkthrough() -> str:
    """The first shell block of the section: the payout -> file part."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("\n## Money in and out\n") :]
    found = re.search(r"```sh\n(.*?)\n```", section, re.S)
    assert found is not None
    return found.group(1)


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="needs curl and jq")
def test_the_readme_payout_walkthrough_runs(http, sessions, settings, admin_user, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    alice = factories.customer(sessions, settings, currency="EUR")
    factories.fund(sessions, admin_user, alice.account, 200_000)
    token = bearer(http, alice.email)["Authorization"].removeprefix("Bearer ")
    admin = bearer(http, admin_user.email)["Authorization"].removeprefix("Bearer ")
    env = {
        **os.environ,
        "API": str(http.base_url).rstrip("/"),
        "TOKEN": token,
        "ADMIN": admin,
        "ACCOUNT": str(alice.account.id),
    }
    script = "set -euo pipefail\n" + walkthrough() + '\necho "PAYOUT=$PAYOUT FILE=$FILE"\n'
    run = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert '{"status":"PENDING",' in run.stdout, run.stdout
    ids = dict(part.split("=", 1) for part in run.stdout.strip().splitlines()[-1].split())
    payout = http.get(f"/payouts/{ids['PAYOUT']}", headers={"Authorization": f"Bearer {token}"}).json()
    assert (payout["status"], payout["file_id"], payout["amount"]) == ("SENT", ids["FILE"], 120_000)
    doc = etree.parse(str(tmp_path / "payouts.xml"))
    assert etree.XMLSchema(etree.parse(str(XSD))).validate(doc)
    assert payout["end_to_end_id"] in doc.xpath("//p:EndToEndId/text()", namespaces=NS)
    account = http.get(f"/accounts/{alice.account.id}", headers={"Authorization": f"Bearer {token}"}).json()
    assert account["balance"] == 80_000
