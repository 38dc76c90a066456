"""README's audit check (examples/verify_audit.py) on batches built with core/audit's own hashing:
it agrees with the server's definition, refuses a forged record, and does so under python -O."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.audit import leaf
from core.audit.merkle import chain_steps, chained_root, merkle_proof, merkle_root

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "verify_audit.py"


def sealed_batch() -> tuple[dict[str, Any], dict[str, Any]]:
    """The JSON of GET /transfers/{id}/audit (one sealed item) and of GET /audit/roots/1."""
    records = [
        leaf.record(seq=seq, action="transfer.completed", occurred_at=datetime(2026, 12, 3, tzinfo=UTC), details={})
        for seq in (1, 2, 3)
    ]
    records[1]["details"] = {"amount": 1234, "reference": "rent é"}
    hashes = [leaf.row_hash(r) for r in records]
    context = merkle_root([leaf.row_hash({"n": i}) for i in range(3)])
    root = {
        "n": 1,
        "root": chained_root(None, merkle_root(hashes), context),
        "previous_root": None,
        "sealed_at": "2026-12-03T00:00:01+00:00",
        "leaf_version": 2,
        "merkle_root": merkle_root(hashes),
        "context_root": context,
    }
    proof = merkle_proof(hashes, 1) + chain_steps(None, context)
    item = {
        **records[1],
        "row_hash": hashes[1],
        "sealed_batch": 1,
        "proof": [{"side": s.side, "sibling": s.sibling} for s in proof],
    }
    return {"items": [item], "root": root}, root


RUN = """
import json, sys
sys.path.insert(0, sys.argv[1])
import verify_audit
audit, root = json.loads(sys.stdin.read())
verify_audit.verify(audit, lambda path: root)
print("verified")
"""


def run_example(audit: dict[str, Any], root: dict[str, Any], *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *flags, "-c", RUN, str(EXAMPLE.parent)],
        input=json.dumps([audit, root]),  # through JSON, as a client reads it
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_check_agrees_with_the_servers_hashing() -> None:
    audit, root = sealed_batch()
    done = run_example(audit, root)
    assert done.returncode == 0 and "verified" in done.stdout, done.stderr


def test_a_forged_amount_fails_even_under_python_O() -> None:
    audit, root = sealed_batch()
    audit["items"][0]["details"]["amount"] = 1
    for flags in ((), ("-O",)):
        done = run_example(audit, root, *flags)
        assert done.returncode == 1 and "NotVerified" in done.stderr, (flags, done.stdout, done.stderr)
