"""GET /transfers/{id}/audit and /audit/roots: a client recomputes each leaf from the record it reads,
follows its proof to its batch's root and the roots' links to the newest, with README's check
(examples/verify_audit.py, which README shows word for word)."""

from __future__ import annotations

import copy
import importlib.util
import json
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from core.transfers.idempotency import MoneyMovement
from core.transfers.submit import submit_transfer
from tests.factories import fund, seal_all
from tests.integration.test_api import assert_problem, login
from tests.settling import settle_transfer

pytestmark = pytest.mark.commits  # the proofs need sealed rows, and the sealer chains only committed transactions

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "verify_audit.py"
ITEM_KEYS = {"seq", "action", "occurred_at", "details", "row_hash", "sealed_batch", "proof"}
ROOT_KEYS = {"n", "root", "previous_root", "sealed_at", "leaf_version", "merkle_root", "context_root"}


def example() -> ModuleType:
    """README's check, examples/verify_audit.py, loaded as the module a client would run."""
    spec = importlib.util.spec_from_file_location("verify_audit", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_readme_check(audit: dict[str, Any], fetch: Callable[[str], Any]) -> dict[str, Any]:
    """README's check on ``audit``, fetching roots with ``fetch`` (path under /api/v1 -> JSON)."""
    return example().verify(audit, fetch)  # type: ignore[no-any-return]


def test_readme_shows_the_check_word_for_word() -> None:
    assert EXAMPLE.read_text().strip() in (ROOT / "README.md").read_text()


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


def fetcher(client, headers) -> Callable[[str], Any]:  # type: ignore[no-untyped-def]
    def fetch(path: str) -> Any:
        r = client.get(f"/api/v1{path}", headers=headers)
        assert r.status_code == 200, r.get_data(as_text=True)
        return r.json

    return fetch


def test_sealed_rows_verify_with_the_readme_check(client, sessions, settled) -> None:  # type: ignore[no-untyped-def]
    alice, bob, transfer_id = settled
    seal_all(sessions)
    for who in (alice, bob):  # both parties see the same record
        fetch = fetcher(client, login(client, who.email))
        audit = fetch(f"/transfers/{transfer_id}/audit")
        assert [i["action"] for i in audit["items"]] == ["transfer.requested", "transfer.completed"]
        assert set(audit) == {"items", "root"} and all(set(i) == ITEM_KEYS for i in audit["items"])
        latest = run_readme_check(audit, fetch)
        assert latest == audit["root"] and set(latest) == ROOT_KEYS and latest["leaf_version"] == 2
    item = audit["items"][1]
    assert item["details"] == {"amount": 1234} and item["occurred_at"].endswith("+00:00")
    assert fetch(f"/audit/roots/{item['sealed_batch']}")["n"] == item["sealed_batch"] <= latest["n"]


def test_the_check_walks_from_an_older_batch_to_the_newest_root(client, sessions, make_customer, settled) -> None:  # type: ignore[no-untyped-def]
    alice, _, transfer_id = settled
    seal_all(sessions)
    for _ in range(3):  # later batches: the walk has links to follow
        make_customer()
        seal_all(sessions)
    fetch = fetcher(client, login(client, alice.email))
    audit = fetch(f"/transfers/{transfer_id}/audit")
    latest = run_readme_check(audit, fetch)
    assert latest["n"] >= audit["items"][-1]["sealed_batch"] + 3
    # A server that shows another chain: a link that does not follow, or a root not made of its parts.
    forged_n = audit["items"][-1]["sealed_batch"] + 1

    def forged(change: Callable[[dict[str, Any]], None]) -> Callable[[str], Any]:
        def fetch_forged(path: str) -> Any:
            body = fetch(path)
            if body.get("n") == forged_n:
                change(body)
            return body

        return fetch_forged

    for change in (
        lambda r: r.update(previous_root="ab" * 32),
        lambda r: r.update(root="ab" * 32),
        lambda r: r.update(merkle_root="ab" * 32),
        lambda r: r.update(context_root="ab" * 32),
    ):
        with pytest.raises(AssertionError):
            run_readme_check(audit, forged(change))


def _flip(hex_digest: str) -> str:
    return ("1" if hex_digest[0] == "0" else "0") + hex_digest[1:]


def _later(moment: str) -> str:
    return (datetime.fromisoformat(moment) + timedelta(seconds=1)).isoformat(timespec="microseconds")


# A changed field of the record: its row_hash no longer matches it; recomputed, the proof fails.
RECORD_FORGERIES: dict[str, Callable[[dict[str, Any]], None]] = {
    "action": lambda i: i.update(action="transfer.failed"),
    "occurred_at": lambda i: i.update(occurred_at=_later(i["occurred_at"])),
    "details amount": lambda i: i["details"].update(amount=i["details"]["amount"] + 1),
    "details added": lambda i: i["details"].update(note="forged"),
    "seq": lambda i: i.update(seq=i["seq"] + 1),
}
PROOF_FORGERIES: dict[str, Callable[[dict[str, Any]], None]] = {
    "row_hash": lambda i: i.update(row_hash=_flip(i["row_hash"])),
    "sibling": lambda i: i["proof"][0].update(sibling=_flip(i["proof"][0]["sibling"])),
    "last sibling": lambda i: i["proof"][-1].update(sibling=_flip(i["proof"][-1]["sibling"])),
    "side": lambda i: i["proof"][0].update(side="left" if i["proof"][0]["side"] == "right" else "right"),
    "sealed_batch": lambda i: i.update(sealed_batch=i["sealed_batch"] - 1),
}
CASES = [
    *((name, rehash) for name in RECORD_FORGERIES for rehash in (False, True)),
    *((name, False) for name in PROOF_FORGERIES),
]


@pytest.mark.parametrize(("field", "rehash"), CASES, ids=[f"{f}{'-rehashed' if r else ''}" for f, r in CASES])
def test_the_readme_check_refuses_any_single_changed_field(
    client, sessions, make_customer, settled, field, rehash
) -> None:  # type: ignore[no-untyped-def]
    alice, _, transfer_id = settled
    make_customer()  # more rows in the batch: the transfer's rows have siblings to alter
    seal_all(sessions)
    make_customer()  # and a later batch: the check walks a link
    seal_all(sessions)
    fetch = fetcher(client, login(client, alice.email))
    audit = fetch(f"/transfers/{transfer_id}/audit")
    run_readme_check(audit, fetch)
    item = copy.deepcopy(audit["items"][1])  # transfer.completed: details {"amount": 1234}
    assert item["proof"] and item["details"] == {"amount": 1234}
    {**RECORD_FORGERIES, **PROOF_FORGERIES}[field](item)
    if rehash:
        item["row_hash"] = example().leaf_hash(item)
    assert item != audit["items"][1]
    with pytest.raises(AssertionError):
        run_readme_check({**audit, "items": [item]}, fetch)


def test_unsealed_rows_have_no_proof_yet(client, settled) -> None:  # type: ignore[no-untyped-def]
    alice, _, transfer_id = settled
    fetch = fetcher(client, login(client, alice.email))
    audit = fetch(f"/transfers/{transfer_id}/audit")
    unsealed = [i for i in audit["items"] if i["seq"] is None]
    # The background sealer does not run in this tier: the rows wait for seal_all.
    assert unsealed and all(i["proof"] is None and i["row_hash"] is None for i in unsealed)
    assert all(i["sealed_batch"] is None for i in unsealed)


def test_roots_need_a_sign_in_and_an_unknown_n_is_404(client, sessions, make_customer, settled) -> None:  # type: ignore[no-untyped-def]
    seal_all(sessions)
    headers = login(client, make_customer().email)  # any signed-in user: roots are not secret
    latest = client.get("/api/v1/audit/roots/latest", headers=headers).json
    assert client.get(f"/api/v1/audit/roots/{latest['n']}", headers=headers).json == latest
    for n in (latest["n"] + 1000, 0, 2**63, 10**30):  # past the last, none, past the column's range
        assert_problem(client.get(f"/api/v1/audit/roots/{n}", headers=headers), 404, "NOT_FOUND")
    assert client.get("/api/v1/audit/roots/latest").status_code == 401
    assert client.get(f"/api/v1/audit/roots/{latest['n']}").status_code == 401


def test_visibility_is_that_of_the_transfer(client, make_customer, admin_user, settled) -> None:  # type: ignore[no-untyped-def]
    _, _, transfer_id = settled
    stranger = login(client, make_customer().email)
    assert_problem(client.get(f"/api/v1/transfers/{transfer_id}/audit", headers=stranger), 404, "NOT_FOUND")
    assert_problem(client.get(f"/api/v1/transfers/{uuid.uuid4()}/audit", headers=stranger), 404, "NOT_FOUND")
    assert client.get(f"/api/v1/transfers/{transfer_id}/audit").status_code == 401
    as_admin = fetcher(client, login(client, admin_user.email))(f"/transfers/{transfer_id}/audit")
    assert len(as_admin["items"]) == 2


def test_nothing_of_the_other_party_leaks(client, sessions, settled) -> None:  # type: ignore[no-untyped-def]
    alice, bob, transfer_id = settled
    seal_all(sessions)
    text = client.get(f"/api/v1/transfers/{transfer_id}/audit", headers=login(client, bob.email)).get_data(as_text=True)
    # Alice's user id (the actor) and her request id are in the context hashes, never shown.
    assert str(alice.user.id) not in text and "req-alice-private" not in text and alice.email not in text
    assert all(set(i) == ITEM_KEYS for i in json.loads(text)["items"])


def test_refund_rows_and_verify_audit_still_pass(app, client, sessions, settled) -> None:  # type: ignore[no-untyped-def]
    alice, bob, transfer_id = settled
    r = client.post(
        f"/api/v1/transfers/{transfer_id}/refunds",
        json={"amount": 34, "reason": "partial"},
        headers={**login(client, bob.email), "Idempotency-Key": str(uuid.uuid4())},
    )
    assert r.status_code == 202
    seal_all(sessions)
    fetch = fetcher(client, login(client, alice.email))
    audit = fetch(f"/transfers/{r.json['id']}/audit")
    assert audit["items"][0]["action"] == "refund.requested"
    assert audit["items"][0]["details"]["reason"] == "partial"
    run_readme_check(audit, fetch)
    result = app.test_cli_runner().invoke(args=["verify-audit"])
    assert result.exit_code == 0 and "audit chain intact" in result.output
