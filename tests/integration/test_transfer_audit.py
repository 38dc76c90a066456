"""GET /transfers/{id}/audit: the transfer's audit rows and inclusion proofs a client checks alone."""

from __future__ import annotations

import copy
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from core.transfers.idempotency import MoneyMovement
from core.transfers.settle import settle_transfer
from core.transfers.submit import submit_transfer
from tests.factories import fund, seal_all
from tests.integration.test_api import assert_problem, login

pytestmark = pytest.mark.commits  # the proofs need sealed rows, and the sealer chains only committed transactions

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_check() -> str:
    """The Python block that follows the audit-proof marker in README.md, verbatim."""
    match = re.search(r"<!-- audit-proof-check -->\n```python\n(.*?)```", README.read_text(), re.S)
    assert match, "README.md lost its audit proof example"
    return match.group(1)


def run_readme_check(audit: dict[str, Any]) -> None:
    """Exec the README's code with ``audit`` as the only thing it is given; it asserts by itself."""
    exec(compile(readme_check(), str(README), "exec"), {"audit": audit})  # noqa: S102 - our own README


@pytest.fixture
def settled(sessions, make_customer, admin_user):  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    fund(sessions, admin_user, alice.account, 5000)
    with sessions.begin() as s:
        transfer = submit_transfer(
            s,
            user=alice.user,
            idempotency_key=str(uuid.uuid4()),
            movement=MoneyMovement(alice.account.id, bob.account.id, 1234, "USD", "rent"),
            request_id="req-alice-private",
        ).transfer
    with sessions.begin() as s:
        settle_transfer(s, transfer.id)
    return alice, bob, transfer.id


def audit_of(client, transfer_id, headers):  # type: ignore[no-untyped-def]
    r = client.get(f"/api/v1/transfers/{transfer_id}/audit", headers=headers)
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.json


def test_sealed_rows_verify_with_the_readme_code(client, sessions, settled) -> None:  # type: ignore[no-untyped-def]
    alice, bob, transfer_id = settled
    seal_all(sessions)
    for who in (alice, bob):  # both parties see the same record
        audit = audit_of(client, transfer_id, login(client, who.email))
        assert [i["action"] for i in audit["items"]] == ["transfer.requested", "transfer.completed"]
        run_readme_check(audit)
    item = audit["items"][0]
    batch = item["sealed_batch"]
    assert 0 <= batch["leaf_index"] < batch["tree_size"] == batch["last_seq"] - batch["first_seq"] + 1
    assert item["seq"] == batch["first_seq"] + batch["leaf_index"]
    assert audit["root"]["batch_id"] >= batch["id"] and len(audit["root"]["root"]) == 64
    assert audit["items"][1]["details"] == {"amount": 1234}


@pytest.mark.parametrize("field", ["row_hash", "sibling", "merkle_root", "prev_root", "side"])
def test_the_readme_code_refuses_an_altered_proof(client, sessions, make_customer, settled, field) -> None:  # type: ignore[no-untyped-def]
    alice, _, transfer_id = settled
    make_customer()  # more rows in the batch: the transfer's rows have siblings to alter
    seal_all(sessions)
    audit = audit_of(client, transfer_id, login(client, alice.email))
    run_readme_check(audit)
    bad = copy.deepcopy(audit)
    item = next(i for i in bad["items"] if i["proof"])
    flip = {"0": "1", "1": "0"}
    if field == "row_hash":
        item["row_hash"] = flip.get(item["row_hash"][0], "0") + item["row_hash"][1:]
    elif field == "sibling":
        step = item["proof"][0]
        step["sibling"] = flip.get(step["sibling"][0], "0") + step["sibling"][1:]
    elif field == "side":
        step = item["proof"][0]
        step["side"] = "left" if step["side"] == "right" else "right"
    elif field == "merkle_root":
        item["sealed_batch"]["merkle_root"] = "ab" * 32
    else:
        item["sealed_batch"]["prev_root"] = "cd" * 32
    bad["items"] = [item]
    with pytest.raises(AssertionError):
        run_readme_check(bad)


def test_unsealed_rows_have_no_proof_yet(client, settled) -> None:  # type: ignore[no-untyped-def]
    alice, _, transfer_id = settled
    audit = audit_of(client, transfer_id, login(client, alice.email))
    unsealed = [i for i in audit["items"] if i["seq"] is None]
    # The background sealer does not run in this tier: the rows wait for seal_all.
    assert unsealed and all(i["proof"] is None and i["row_hash"] is None for i in unsealed)
    assert all(i["sealed_batch"] is None for i in unsealed)


def test_visibility_is_that_of_the_transfer(client, make_customer, admin_user, settled) -> None:  # type: ignore[no-untyped-def]
    _, _, transfer_id = settled
    stranger = login(client, make_customer().email)
    assert_problem(client.get(f"/api/v1/transfers/{transfer_id}/audit", headers=stranger), 404, "NOT_FOUND")
    assert_problem(client.get(f"/api/v1/transfers/{uuid.uuid4()}/audit", headers=stranger), 404, "NOT_FOUND")
    assert client.get(f"/api/v1/transfers/{transfer_id}/audit").status_code == 401
    as_admin = audit_of(client, transfer_id, login(client, admin_user.email))
    assert len(as_admin["items"]) == 2


def test_nothing_of_the_other_party_leaks(client, sessions, settled) -> None:  # type: ignore[no-untyped-def]
    alice, bob, transfer_id = settled
    seal_all(sessions)
    text = client.get(f"/api/v1/transfers/{transfer_id}/audit", headers=login(client, bob.email)).get_data(as_text=True)
    # Alice's user id (the actor) and her request id are hashed into the rows, never shown.
    assert str(alice.user.id) not in text and "req-alice-private" not in text and alice.email not in text
    item_keys = {"seq", "action", "occurred_at", "details", "row_hash", "prev_hash", "sealed_batch", "proof"}
    assert all(set(i) == item_keys for i in json.loads(text)["items"])


def test_refund_rows_and_verify_audit_still_pass(app, client, sessions, settled) -> None:  # type: ignore[no-untyped-def]
    alice, bob, transfer_id = settled
    r = client.post(
        f"/api/v1/transfers/{transfer_id}/refunds",
        json={"amount": 34, "reason": "partial"},
        headers={**login(client, bob.email), "Idempotency-Key": str(uuid.uuid4())},
    )
    assert r.status_code == 202
    seal_all(sessions)
    audit = audit_of(client, r.json["id"], login(client, alice.email))
    assert audit["items"][0]["action"] == "refund.requested"
    assert audit["items"][0]["details"]["reason"] == "partial"
    run_readme_check(audit)
    result = app.test_cli_runner().invoke(args=["verify-audit"])
    assert result.exit_code == 0 and "audit chain intact" in result.output
