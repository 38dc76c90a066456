"""Check a transfer's audit record against the bank's chained roots, trusting the server for nothing.

    pip install rfc8785
    API=http://localhost:8000/api/v1 TOKEN=... TRANSFER_ID=... python examples/verify_audit.py

For every sealed item of GET /transfers/{id}/audit: its row_hash is recomputed from the record as
returned (leaf version 2), its proof must lead to its batch's root (GET /audit/roots/{n}), and
that root must link, root by root, to the newest one (GET /audit/roots/latest), which it prints:
compare it with a copy kept earlier (by you or an auditor) or later. Items of batches sealed
before leaf version 2 (leaf_version 1) hash fields the API does not show: their proof is checked,
and that every batch before theirs is version 1 too, their content only by `flask verify-audit`.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import urllib.request
from collections.abc import Callable
from typing import Any

import rfc8785

Fetch = Callable[[str], Any]  # the JSON of GET API + path
NOT_HASHED = ("row_hash", "sealed_batch", "proof")


class NotVerified(AssertionError):
    """The record, its proof or the chain of roots is not what the bank sealed."""


def check(ok: bool, what: str) -> None:
    if not ok:  # not an assert statement: python -O would skip those
        raise NotVerified(what)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def node(left: str, right: str) -> str:
    """An inner node of the tree (RFC 6962): sha256(0x01 || left || right), hex in and out."""
    return sha256(b"\x01" + bytes.fromhex(left) + bytes.fromhex(right)).hex()


def leaf_hash(item: dict[str, Any]) -> str:
    """The item's row_hash, recomputed from its other fields as returned (RFC 8785 canonical JSON)."""
    fields = {key: value for key, value in item.items() if key not in NOT_HASHED}
    return sha256(rfc8785.dumps(fields)).hex()


def climb(row_hash: str, proof: list[dict[str, str]]) -> str:
    """Where the proof leads from the leaf node sha256(0x00 || row_hash)."""
    at = sha256(b"\x00" + bytes.fromhex(row_hash)).hex()
    for step in proof:
        at = node(step["sibling"], at) if step["side"] == "left" else node(at, step["sibling"])
    return at


def links(root: dict[str, Any]) -> bool:
    """The root commits to its previous_root (32 zero bytes before the first batch)."""
    previous = root["previous_root"] or "00" * 32
    if root["leaf_version"] == 1:
        return sha256(bytes.fromhex(previous + root["merkle_root"])).hex() == root["root"]
    return node(previous, node(root["merkle_root"], root["context_root"])) == root["root"]


def walk(root: dict[str, Any], latest: dict[str, Any], fetch: Fetch) -> None:
    """Follow the links from a batch's root up to the newest root."""
    check(links(root), f"root {root['n']} does not commit to its previous root")
    while root["n"] < latest["n"]:
        following = fetch(f"/audit/roots/{root['n'] + 1}")
        check(following["previous_root"] == root["root"], f"root {following['n']} does not follow {root['n']}")
        check(links(following), f"root {following['n']} does not commit to its previous root")
        check(following["leaf_version"] >= root["leaf_version"], f"root {following['n']}: version went back")
        root = following
    check(root["root"] == latest["root"], "the walk does not end at the newest root")


def walk_back_version_1(root: dict[str, Any], fetch: Fetch) -> None:
    """A version 1 batch (its content unchecked) is one only if every batch before it is too:
    version 2 came with migration 0016, and a version 1 batch after it is a forgery."""
    while root["n"] > 1:
        before = fetch(f"/audit/roots/{root['n'] - 1}")
        check(before["root"] == root["previous_root"] and links(before), f"root {root['n']}: broken link back")
        check(before["leaf_version"] == 1, f"root {root['n']}: version 1 after version 2")
        root = before
    check(root["previous_root"] is None, "the first root has a previous root")


def verify(audit: dict[str, Any], fetch: Fetch) -> dict[str, Any]:
    """Raise NotVerified unless every sealed item leads to the newest root; return that root."""
    latest: dict[str, Any] = fetch("/audit/roots/latest")
    walked: set[int] = set()
    for item in audit["items"]:
        if item["proof"] is None:  # not sealed yet: the sealer runs every second or so
            continue
        batch = fetch(f"/audit/roots/{item['sealed_batch']}")
        where = f"seq {item['seq']}"
        if batch["leaf_version"] == 1:
            check(climb(item["row_hash"], item["proof"]) == batch["merkle_root"], f"{where}: proof")
            if batch["n"] not in walked:
                walk_back_version_1(batch, fetch)
        else:
            check(leaf_hash(item) == item["row_hash"], f"{where}: the record is not the one that was hashed")
            check(climb(item["row_hash"], item["proof"]) == batch["root"], f"{where}: proof")
        if batch["n"] not in walked:
            walk(batch, latest, fetch)
            walked.add(batch["n"])
    return latest


def main() -> None:
    api, token = os.environ["API"], os.environ["TOKEN"]

    def fetch(path: str) -> Any:
        request = urllib.request.Request(api + path, headers={"Authorization": f"Bearer {token}"})  # noqa: S310
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - API is yours: http(s)
            return json.load(response)

    try:
        latest = verify(fetch(f"/transfers/{os.environ['TRANSFER_ID']}/audit"), fetch)
    except NotVerified as failed:
        sys.exit(f"audit record NOT verified: {failed}")
    print(f"audit record verified up to root {latest['n']}: {latest['root']}")


if __name__ == "__main__":
    main()
