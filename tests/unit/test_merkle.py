"""The Merkle tree over a seal batch (core/audit/merkle.py): roots, odd counts, inclusion proofs."""

from __future__ import annotations

import hashlib

import pytest

from core.audit.merkle import ProofStep, batch_root, chain_steps, chained_root, merkle_proof, merkle_root, verify_proof


def h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def leaves(n: int) -> list[str]:
    return [hashlib.sha256(f"row {i}".encode()).hexdigest() for i in range(n)]


def L(hex_leaf: str) -> bytes:
    return h(b"\x00" + bytes.fromhex(hex_leaf))


def N(left: bytes, right: bytes) -> bytes:
    return h(b"\x01" + left + right)


def test_one_leaf_is_its_leaf_hash() -> None:
    (a,) = leaves(1)
    assert merkle_root([a]) == L(a).hex()
    assert merkle_proof([a], 0) == []
    assert verify_proof(a, [], merkle_root([a]))


def test_two_and_four_leaves_are_balanced_trees() -> None:
    a, b, c, d = leaves(4)
    assert merkle_root([a, b]) == N(L(a), L(b)).hex()
    assert merkle_root([a, b, c, d]) == N(N(L(a), L(b)), N(L(c), L(d))).hex()


def test_an_odd_last_node_is_carried_up_unchanged() -> None:
    a, b, c, d, e = leaves(5)
    assert merkle_root([a, b, c]) == N(N(L(a), L(b)), L(c)).hex()
    assert merkle_root([a, b, c, d, e]) == N(N(N(L(a), L(b)), N(L(c), L(d))), L(e)).hex()


def test_no_duplication_ambiguity() -> None:
    """Bitcoin-style duplication gives [a, b, c] and [a, b, c, c] one root; carrying up does not."""
    a, b, c = leaves(3)
    assert merkle_root([a, b, c]) != merkle_root([a, b, c, c])


def test_no_leaves_is_an_error() -> None:
    with pytest.raises(ValueError):
        merkle_root([])
    with pytest.raises(IndexError):
        merkle_proof(leaves(3), 3)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 17, 31, 100])
def test_every_leaf_has_a_proof_that_verifies(n: int) -> None:
    items = leaves(n)
    root = merkle_root(items)
    for i, leaf in enumerate(items):
        proof = merkle_proof(items, i)
        assert verify_proof(leaf, proof, root), (n, i)
        assert len(proof) <= max(1, (n - 1).bit_length())


def test_a_proof_does_not_verify_another_leaf_root_or_a_changed_sibling() -> None:
    items = leaves(7)
    root = merkle_root(items)
    proof = merkle_proof(items, 2)
    assert not verify_proof(items[3], proof, root)
    assert not verify_proof(items[2], proof, merkle_root(items[:6]))
    flipped = [ProofStep(proof[0].side, "00" * 32), *proof[1:]]
    assert not verify_proof(items[2], flipped, root)
    swapped = [ProofStep("left" if proof[0].side == "right" else "right", proof[0].sibling), *proof[1:]]
    assert not verify_proof(items[2], swapped, root)


def test_the_last_odd_leaf_proof_skips_the_levels_it_is_carried_up() -> None:
    items = leaves(5)
    proof = merkle_proof(items, 4)
    assert proof == [ProofStep("left", N(N(L(items[0]), L(items[1])), N(L(items[2]), L(items[3]))).hex())]


def test_batch_root_chains_from_zero() -> None:
    m = merkle_root(leaves(3))
    first = batch_root(None, m)
    assert first == h(bytes(32) + bytes.fromhex(m)).hex()
    assert batch_root(first, m) == h(bytes.fromhex(first) + bytes.fromhex(m)).hex()


# ---- RFC 6962 conformance -----------------------------------------------------------------------


def rfc6962_mth(items: list[bytes]) -> bytes:
    """MTH of RFC 6962 section 2.1, as written: split at the largest power of two below n."""
    if len(items) == 1:
        return h(b"\x00" + items[0])
    k = 1 << ((len(items) - 1).bit_length() - 1)
    return h(b"\x01" + rfc6962_mth(items[:k]) + rfc6962_mth(items[k:]))


def rfc9162_verify(leaf: bytes, index: int, size: int, path: list[bytes], root: bytes) -> bool:
    """The inclusion-proof check of RFC 9162 section 2.1.3.2: index, size and siblings, no sides."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, h(b"\x00" + leaf)
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = h(b"\x01" + p + r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = h(b"\x01" + r + p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


@pytest.mark.parametrize("n", range(1, 70))
def test_the_tree_is_rfc6962s(n: int) -> None:
    """Pairing left to right and carrying an odd node up gives RFC 6962's tree, and our audit paths
    are RFC 9162 inclusion proofs: a client with any RFC 6962 library can check them."""
    items = leaves(n)
    root = merkle_root(items)
    assert root == rfc6962_mth([bytes.fromhex(x) for x in items]).hex()
    for i, leaf in enumerate(items):
        path = [bytes.fromhex(step.sibling) for step in merkle_proof(items, i)]
        assert rfc9162_verify(bytes.fromhex(leaf), i, n, path, bytes.fromhex(root)), (n, i)
        assert not rfc9162_verify(bytes.fromhex(leaf), (i + 1) % n, n, path, bytes.fromhex(root)) or n == 1


def test_a_version_2_root_commits_to_the_previous_root_and_both_trees() -> None:
    merkle, context, prev = (merkle_root(leaves(3)), merkle_root(leaves(2)), leaves(1)[0])
    root = chained_root(prev, merkle, context)
    body = N(bytes.fromhex(merkle), bytes.fromhex(context))
    assert root == N(bytes.fromhex(prev), body).hex()
    assert chained_root(None, merkle, context) == N(bytes(32), body).hex()
    assert len({root, chained_root(None, merkle, context), chained_root(prev, context, merkle)}) == 3


@pytest.mark.parametrize("n", [1, 2, 5])
def test_a_proof_with_the_chain_steps_leads_to_the_version_2_root(n: int) -> None:
    rows, contexts, prev = leaves(n), leaves(n + 1)[1:], "ab" * 32
    context = merkle_root(contexts)
    root = chained_root(prev, merkle_root(rows), context)
    for i, row in enumerate(rows):
        proof = merkle_proof(rows, i) + chain_steps(prev, context)
        assert verify_proof(row, proof, root)
        assert not verify_proof(row, merkle_proof(rows, i) + chain_steps("cd" * 32, context), root)
    assert chain_steps(None, context)[-1] == ProofStep("left", "00" * 32)
