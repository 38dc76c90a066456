"""Property: random transfer sequences give the same balances and statuses as a tiny model."""

from __future__ import annotations

import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.accounts.service import set_frozen
from core.models import TransferStatus
from core.transfers.idempotency import MoneyMovement
from core.transfers.submit import submit_transfer
from tests.factories import balance, fund
from tests.profiles import examples
from tests.settling import settle_transfer

N = 3
step = st.one_of(
    st.tuples(st.just("transfer"), st.integers(0, N - 1), st.integers(0, N - 1), st.integers(1, 400)),
    st.tuples(st.just("freeze"), st.integers(0, N - 1), st.booleans(), st.just(0)),
)


@settings(max_examples=examples(25), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(step, min_size=1, max_size=12), opening=st.lists(st.integers(0, 500), min_size=N, max_size=N))
def test_random_sequences_match_the_model(sessions, make_customer, admin_user, steps, opening) -> None:  # type: ignore[no-untyped-def]
    people = [make_customer() for _ in range(N)]
    model_balance = list(opening)
    model_frozen = [False] * N
    for p, amount in zip(people, opening, strict=True):
        if amount:
            fund(sessions, admin_user, p.account, amount)

    for kind, i, j, amount in steps:
        if kind == "freeze":
            if model_frozen[i] == j:
                continue
            with sessions.begin() as s:
                set_frozen(s, people[i].account.id, frozen=j, admin_id=admin_user.id, reason="prop", request_id=None)
            model_frozen[i] = j
            continue
        if i == j or model_frozen[i] or model_frozen[j]:
            continue  # refused synchronously; covered by the API tests
        with sessions.begin() as s:
            t = submit_transfer(
                s,
                user=people[i].user,
                idempotency_key=str(uuid.uuid4()),
                movement=MoneyMovement(people[i].account.id, people[j].account.id, amount, "USD", None),
            ).transfer
        with sessions.begin() as s:
            got = settle_transfer(s, t.id)
        expected_ok = model_balance[i] >= amount
        if expected_ok:
            model_balance[i] -= amount
            model_balance[j] += amount
        assert got.status == (TransferStatus.COMPLETED if expected_ok else TransferStatus.FAILED)
        assert got.failure_code == (None if expected_ok else "INSUFFICIENT_FUNDS")

    assert [balance(sessions, p.account.id) for p in people] == model_balance
