"""The Merkle tree over one seal batch's row hashes: roots, inclusion proofs and their check.

Definition (the same as ``audit_merkle_root()`` in migration 0006, which sealed leaf version 1):

* leaves are the batch's ``row_hash`` values in seq order, 32-byte SHA-256 digests given as hex;
* a leaf node is ``sha256(0x00 || leaf)``, an inner node ``sha256(0x01 || left || right)``
  (the prefixes keep a leaf from posing as an inner node: RFC 6962 domain separation);
* a level is paired left to right; when it has an odd count, its last node is carried up to the
  next level unchanged (never duplicated: duplication would give two leaf lists the same root);
* the root is the single node left; one leaf gives ``sha256(0x00 || leaf)``; no leaves: no tree.

A proof for leaf ``index`` lists, bottom up, the sibling of the running node at every level where
it has one, with the side the sibling sits on; levels where the node is carried up add nothing.

The batches are chained: each batch's ``root`` commits to the previous batch's (32 zero bytes
before the first), so a root published or remembered vouches for every batch before it.

* leaf version 1: ``root = sha256(prev_root || merkle_root)`` (``batch_root``);
* leaf version 2: ``root = node(prev_root, node(merkle_root, context_root))`` (``chained_root``),
  two more inner nodes: a proof to ``merkle_root`` plus ``chain_steps`` leads to ``root`` itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

LEAF = b"\x00"
NODE = b"\x01"


def _leaf(hex_digest: str) -> bytes:
    return hashlib.sha256(LEAF + bytes.fromhex(hex_digest)).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE + left + right).digest()


def _next_level(level: list[bytes]) -> list[bytes]:
    return [_node(level[i], level[i + 1]) if i + 1 < len(level) else level[i] for i in range(0, len(level), 2)]


@dataclass(frozen=True)
class ProofStep:
    side: Literal["left", "right"]  # where the sibling sits
    sibling: str  # hex


def merkle_root(leaves: Sequence[str]) -> str:
    """Hex root of the tree over ``leaves`` (hex row hashes, in order)."""
    return root_of_digests([bytes.fromhex(leaf) for leaf in leaves]).hex()


def root_of_digests(leaves: Sequence[bytes]) -> bytes:
    """The root of the tree over ``leaves`` given as 32-byte digests: the same tree, in tight
    loops (verify-audit builds one per batch over every sealed row)."""
    if not leaves:
        raise ValueError("a Merkle tree needs at least one leaf")
    sha256 = hashlib.sha256
    level = [sha256(LEAF + leaf).digest() for leaf in leaves]
    while len(level) > 1:
        paired = [sha256(NODE + left + right).digest() for left, right in zip(level[0::2], level[1::2], strict=False)]
        if len(level) % 2:
            paired.append(level[-1])  # carried up unchanged
        level = paired
    return level[0]


def merkle_proof(leaves: Sequence[str], index: int) -> list[ProofStep]:
    """The inclusion proof of ``leaves[index]``: siblings from the leaf level up to the root."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf {index} is not in a tree of {len(leaves)} leaves")
    level = [_leaf(leaf) for leaf in leaves]
    proof: list[ProofStep] = []
    while len(level) > 1:
        sibling = index ^ 1
        if sibling < len(level):
            proof.append(ProofStep("left" if sibling < index else "right", level[sibling].hex()))
        level = _next_level(level)
        index //= 2
    return proof


def verify_proof(leaf: str, proof: Sequence[ProofStep], root: str) -> bool:
    """True when ``proof`` leads from ``leaf`` (a hex row hash) to ``root``."""
    node = _leaf(leaf)
    for step in proof:
        sibling = bytes.fromhex(step.sibling)
        node = _node(sibling, node) if step.side == "left" else _node(node, sibling)
    return node.hex() == root


ZERO_ROOT = "00" * 32  # the previous root of the first batch


def batch_root(prev_root: str | None, merkle: str) -> str:
    """The leaf version 1 chain: sha256(prev_root || merkle_root)."""
    return hashlib.sha256(bytes.fromhex(prev_root or ZERO_ROOT) + bytes.fromhex(merkle)).hexdigest()


def chain_steps(prev_root: str | None, context_root: str) -> list[ProofStep]:
    """The two proof steps from a leaf version 2 batch's ``merkle_root`` up to its ``root``."""
    return [ProofStep("right", context_root), ProofStep("left", prev_root or ZERO_ROOT)]


def chained_root(prev_root: str | None, merkle: str, context_root: str) -> str:
    """The leaf version 2 chain: node(prev_root, node(merkle_root, context_root))."""
    body = _node(bytes.fromhex(merkle), bytes.fromhex(context_root))
    return _node(bytes.fromhex(prev_root or ZERO_ROOT), body).hex()
