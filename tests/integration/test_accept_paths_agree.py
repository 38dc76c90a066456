"""A differential property test: over generated states, the accept paths of POST /transfers
decide alike.

Each example draws a state (the caller's KYC, status and PIN, the accounts' statuses and
per_transfer limits, an earlier transfer under the request's key) and a request (source,
destination, currency, amount, hold, PIN, key), builds the state in a savepoint, and runs the
request through each path in a savepoint of its own that is rolled back afterwards, so every
path sees the same state:

- the careful path (``accept_carefully``: Python checks, then ``submit_transfer``);
- the one statement alone (``accept_in_one_statement``: the SQL decision, no fallback), which
  must give the careful path's answer whenever it answers, write nothing when it does not, and
  answer (not fall back) whenever the caller is one it is meant for (a live token, KYC approved,
  active, the right PIN with no failures and no lock) and the careful path accepts or replays;
- ``accept_transfer`` (what the API calls: the statement, else the careful path), which must
  give exactly the careful path's answer;
- a one-item batch (``prepare_batch``, the PIN, ``accept_batch``), for a caller the statement is
  meant for: the item's outcome must be the careful path's.

An answer is the error (type and message, hence code and status), or the PIN check's outcome,
or the transfer (its fields); for the single paths also the rows written: transfers, audit rows,
outbox events and the caller's PIN state. A batch's writes are compared too, less what only a
batch writes: its own ``transfer_batch.accepted`` audit row and the ``batch_id`` its transfer's
audit row and events name (the rest is core/transfers/requested.py's, as on the other paths).

Cases are drawn as the usual request with up to three things wrong; every single wrong thing is
also an explicit example run first, so each rule is met alone in every run and the drawn cases
add the mixes. Dropping the source's currency, per_transfer, KYC or PIN-failure condition from
the statement, or swapping its event owners' order, fails this test.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import or_, select, text, update
from sqlalchemy.orm import Session

from core.accounts.service import settlement_account_id
from core.config import Settings
from core.db import database_now
from core.errors import DomainError
from core.events import DomainEvent
from core.identity.pin_checks import PinCheck, check_pin
from core.identity.pins import hash_pin
from core.identity.tokens import TokenCaller
from core.models import Account, AccountStatus, AuditLog, KycStatus, Transfer, User, UserStatus
from core.money import validate_amount, validate_currency
from core.resources import Policies
from core.transfers.accept import accept_carefully, accept_in_one_statement, accept_transfer
from core.transfers.batch import BatchItem, ItemOutcome, accept_batch, prepare_batch
from core.transfers.idempotency import MoneyMovement, validate_key
from core.transfers.submit import submit_transfer, validate_hold
from tests.factories import PIN
from tests.profiles import examples

PINS = Policies.from_settings(Settings()).pins
REQUEST_ID = "req-differential"
PRIOR_KEY, NEW_KEY = "k-prior", "k-new"

# What a transfer row is, apart from what differs between two runs of the same request.
TRANSFER_FIELDS = (
    "kind", "initiated_by", "idempotency_key", "request_hash", "source_account_id", "destination_account_id",
    "amount", "currency", "reference", "status", "partition", "hold", "failure_code", "request_id",
)  # fmt: skip
VOLATILE = ("id", "created_at", "updated_at", "hold_expires_at")


@dataclass(frozen=True)
class World:
    """Users and accounts made once per test; each example changes their state in a savepoint."""

    alice: uuid.UUID  # the caller
    bob: uuid.UUID
    accounts: dict[str, uuid.UUID | None]  # by role; None: no account (source) / missing (destination)


@pytest.fixture
def world(sessions, make_customer) -> World:  # type: ignore[no-untyped-def]
    """Made once for all of the test's examples (hypothesis runs them in one fixture scope)."""
    alice, bob = make_customer(), make_customer()
    with sessions.begin() as s:
        extra = {
            "alice_usd2": Account(user_id=alice.user.id, currency="USD", status=AccountStatus.ACTIVE),
            "alice_eur": Account(user_id=alice.user.id, currency="EUR", status=AccountStatus.ACTIVE),
            "bob_eur": Account(user_id=bob.user.id, currency="EUR", status=AccountStatus.ACTIVE),
        }
        s.add_all(extra.values())
        s.flush()
        settlement = settlement_account_id(s, "USD")
        accounts: dict[str, uuid.UUID | None] = {
            "alice_usd": alice.account.id,
            "bob_usd": bob.account.id,
            **{role: a.id for role, a in extra.items()},
            "settlement_usd": settlement,
            "missing": uuid.uuid4(),
            "none": None,  # a transfer without a source (only deposits have none)
        }
    return World(alice.user.id, bob.user.id, accounts)


CUSTOMER_ACCOUNTS = ("alice_usd", "alice_usd2", "alice_eur", "bob_usd", "bob_eur")
# A case is the usual request of a caller the one statement is meant for (every check passes),
# with up to three things changed to one of their wrong values, so that each rule is met alone
# as well as with others; amounts, holds, references, per_transfer limits and replays are drawn
# in every case. ("status:ROLE" is an account's status; "status" changes one of them.)
GOOD: dict[str, Any] = {
    "kyc": KycStatus.APPROVED, "user_status": UserStatus.ACTIVE, "pin_set": True, "pin_failures": 0,
    "pin_lock": None, "token_live": True, **{f"status:{a}": AccountStatus.ACTIVE for a in CUSTOMER_ACCOUNTS},
    "source": "alice_usd", "destination": "bob_usd", "currency": "USD", "right_pin": True, "key": NEW_KEY,
}  # fmt: skip
WRONG: dict[str, list[Any]] = {
    "kyc": [KycStatus.PENDING, KycStatus.REJECTED],
    "user_status": [UserStatus.INACTIVE, UserStatus.SUSPENDED],
    "pin_set": [False],
    "pin_failures": [1, 2],
    "pin_lock": ["past", "future"],  # an expired lock is no lock
    "token_live": [False],
    "status": [
        (a, s) for a in CUSTOMER_ACCOUNTS for s in (AccountStatus.INACTIVE, AccountStatus.FROZEN, AccountStatus.CLOSED)
    ],
    "source": ["alice_eur", "alice_usd2", "bob_usd", "none"],
    "destination": ["alice_usd", "alice_usd2", "alice_eur", "bob_eur", "settlement_usd", "missing"],
    "currency": ["EUR", "GBP", "usd"],
    "right_pin": [False],
    "key": [""],
    "amount": [0, -5, 2**53 - 1, 2**53],
    "hold": [(True, 5), (False, 3600)],
}
limits_ = st.one_of(st.none(), st.integers(1, 120))


@st.composite
def cases(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """A (state, request) pair."""
    values = {
        **GOOD,
        "amount": draw(st.integers(1, 150)),
        "reference": draw(st.sampled_from([None, "rent"])),
        "hold": draw(st.sampled_from([(False, None), (True, None), (True, 3600)])),
        "bank_per_transfer": draw(limits_),
        "own_per_transfer": draw(limits_),
        "replay": draw(st.sampled_from([None, None, "same", "other"])),
    }
    changes = draw(st.integers(0, 3))
    for name in draw(st.lists(st.sampled_from(sorted(WRONG)), min_size=changes, max_size=changes, unique=True)):
        wrong = draw(st.sampled_from(WRONG[name]))
        if name == "status":
            values[f"status:{wrong[0]}"] = wrong[1]
        else:
            values[name] = wrong
    return _split(values)


STATE_KEYS = ("kyc", "user_status", "pin_set", "pin_failures", "pin_lock", "token_live", "bank_per_transfer",
              "own_per_transfer", "replay")  # fmt: skip


def _split(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    state = {k: values[k] for k in STATE_KEYS}
    state["statuses"] = {a: values[f"status:{a}"] for a in CUSTOMER_ACCOUNTS}
    request = {k: v for k, v in values.items() if k not in STATE_KEYS and not k.startswith("status:")}
    return state, request


def _one_change(name: str, wrong: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The usual case with one thing wrong: every rule met alone in every run (hypothesis runs
    these first), the drawn cases then mix them."""
    values = {**GOOD, "amount": 50, "reference": None, "hold": (False, None), "bank_per_transfer": None,
              "own_per_transfer": None, "replay": None}  # fmt: skip
    if name == "status":
        values[f"status:{wrong[0]}"] = wrong[1]
    else:
        values[name] = wrong
    return _split(values)


def _examples(cases: list[Any]) -> Any:
    def add(test: Any) -> Any:
        for case in cases:
            test = example(case=case)(test)
        return test

    return add


ONE_CHANGE = [
    _one_change(name, wrong) for name, wrongs in WRONG.items() for wrong in wrongs
] + [  # the per_transfer limit (the lower of the bank's and the owner's) and replays
    _one_change("bank_per_transfer", 49), _one_change("own_per_transfer", 49), _one_change("own_per_transfer", 50),
    _one_change("replay", "same"), _one_change("replay", "other"),
]  # fmt: skip


def _movement(world: World, r: dict[str, Any]) -> MoneyMovement:
    hold, seconds = r["hold"]
    destination = world.accounts[r["destination"]]
    assert destination is not None
    return MoneyMovement(
        world.accounts[r["source"]], destination, r["amount"], r["currency"], r["reference"], hold, seconds
    )


PRIOR = {"source": "alice_usd", "destination": "bob_usd", "currency": "USD", "amount": 100, "reference": "prior"}


def _build(s: Session, world: World, state: dict[str, Any]) -> None:
    """The drawn state, over the world as made: an earlier transfer first (accepted while all was
    well), then the caller's and the accounts' state."""
    if state["replay"] is not None:
        prior = _movement(world, {**PRIOR, "hold": (False, None)})
        submit_transfer(s, user=s.get_one(User, world.alice), idempotency_key=PRIOR_KEY, movement=prior, partitions=4)
    lock = {None: None, "past": text("now() - interval '1 minute'"), "future": text("now() + interval '1 hour'")}
    s.execute(
        update(User)
        .where(User.id == world.alice)
        .values(
            kyc_status=state["kyc"],
            status=state["user_status"],
            pin_hash=hash_pin(PINS.pepper, world.alice, PIN) if state["pin_set"] else None,
            pin_failed_attempts=state["pin_failures"],
            pin_locked_until=lock[state["pin_lock"]],
        )
    )
    for role, status in state["statuses"].items():
        values: dict[str, Any] = {"status": status}
        if role == "alice_usd" or role == "alice_eur":  # the sources the caller may own
            values |= {"bank_per_transfer": state["bank_per_transfer"], "own_per_transfer": state["own_per_transfer"]}
        s.execute(update(Account).where(Account.id == world.accounts[role]).values(**values))
    s.expire_all()


def _well_formed(movement: MoneyMovement, key: str) -> bool:
    """A request the one statement takes to the database (it leaves the rest to the careful path)."""
    try:
        validate_key(key), validate_amount(movement.amount), validate_currency(movement.currency)
        validate_hold(movement)
    except DomainError:
        return False
    return movement.source_account_id not in (None, movement.destination_account_id)


def _eligible(state: dict[str, Any], request: dict[str, Any]) -> bool:
    """A caller the one statement is meant for: it must decide, not fall back."""
    return (
        state["token_live"]
        and state["kyc"] == KycStatus.APPROVED
        and state["user_status"] == UserStatus.ACTIVE
        and state["pin_set"]
        and state["pin_failures"] == 0
        and state["pin_lock"] != "future"
        and request["right_pin"]
    )


def _transfer(t: Any, created: bool) -> dict[str, Any]:
    fields = {c: getattr(t, c) for c in TRANSFER_FIELDS}
    fields["metadata"] = t.metadata_ if isinstance(t, Transfer) else t._mapping["metadata"]
    fields["hold_seconds"] = (
        None if t.hold_expires_at is None else round((t.hold_expires_at - t.created_at).total_seconds())
    )
    if not created:
        fields["id"] = t.id  # a replay returns the earlier transfer itself
    return fields


class _Marks:
    """The rows that existed before a path ran, so its own writes can be told apart."""

    def __init__(self, s: Session, world: World) -> None:
        self.world = world
        self.transfers = set(s.scalars(self._transfers()))
        self.audits = set(s.scalars(self._audits()))
        self.events = set(s.scalars(self._events()))

    def _transfers(self) -> Any:
        return select(Transfer.id).where(Transfer.initiated_by == self.world.alice)

    def _audits(self) -> Any:
        return select(AuditLog.id).where(
            or_(AuditLog.actor_id == self.world.alice, AuditLog.entity_id == str(self.world.alice))
        )

    def _events(self) -> Any:
        w = self.world
        return select(DomainEvent.id).where(or_(DomainEvent.owner_ids.any(w.alice), DomainEvent.owner_ids.any(w.bob)))

    def writes(self, s: Session) -> dict[str, Any]:
        """What the path wrote, with its new transfer's id as "T" (two runs make two ids)."""
        s.expire_all()
        new = [
            t
            for t in s.scalars(select(Transfer).where(Transfer.initiated_by == self.world.alice))
            if t.id not in self.transfers
        ]
        ids = {str(t.id): "T" for t in new}
        audits = [
            (a.action, a.entity_type, a.actor_id, ids.get(a.entity_id, a.entity_id), a.details, a.request_id)
            for a in s.scalars(self._audits_rows())
            if a.id not in self.audits
        ]
        events = [
            (e.event_type, e.owner_ids, {k: v for k, v in e.data.items() if k not in VOLATILE})
            for e in s.scalars(select(DomainEvent).where(DomainEvent.id.in_(self._events())))
            if e.id not in self.events
        ]
        user = s.get_one(User, self.world.alice)
        return {
            "transfers": [_transfer(t, created=True) for t in new],
            "audits": sorted(audits, key=repr),
            "events": sorted(events, key=repr),
            "pin": (user.pin_failed_attempts, user.pin_locked_until),
        }

    def _audits_rows(self) -> Any:
        return select(AuditLog).where(AuditLog.id.in_(self._audits())).order_by(AuditLog.id)


def _answer(run: Any) -> tuple[Any, ...] | None:
    """The path's answer: ("error", type, message), ("pin", check), ("accepted", created, transfer);
    None: the one statement fell back."""
    try:
        outcome = run()
    except DomainError as error:
        return ("error", type(error).__name__, str(error))
    if outcome is None:
        return None
    if hasattr(outcome, "pin"):  # an AcceptOutcome
        if outcome.accepted is None:
            return ("pin", outcome.pin)
        outcome = outcome.accepted
    return ("accepted", outcome.created, _transfer(outcome.transfer, outcome.created))


def _in_savepoint(s: Session, world: World, answer_of: Any) -> tuple[tuple[Any, ...] | None, dict[str, Any]]:
    """A path's answer and writes, in a savepoint rolled back afterwards: the next path sees the
    same state."""
    nested = s.begin_nested()
    try:
        marks = _Marks(s, world)
        answer = answer_of()
        return answer, marks.writes(s)
    finally:
        nested.rollback()
        s.expire_all()


def _careful(s: Session, world: World, movement: MoneyMovement, key: str, pin: str) -> Any:
    return accept_carefully(
        s, user=s.get_one(User, world.alice), idempotency_key=key, movement=movement, pin=pin, pin_policy=PINS,
        partitions=4, request_id=REQUEST_ID,
    )  # fmt: skip


def _batch(s: Session, world: World, movement: MoneyMovement, key: str, pin: str) -> tuple[Any, ...]:
    """A one-item batch as the web layer runs one (the PIN when needed, then the batch), its
    item's answer in the single path's terms."""
    user = s.get_one(User, world.alice)
    plan = prepare_batch(s, user, [BatchItem(key, movement, movement.hold)])
    if plan.needs_pin:
        checked = check_pin(
            s, user_id=user.id, pin=pin, policy=PINS, now=database_now(s), request_id=REQUEST_ID, known_user=user
        )
        if checked is not PinCheck.OK:
            return ("pin", checked)
    result = accept_batch(s, plan, user=user, atomic=False, partitions=4, request_id=REQUEST_ID)
    item = result.items[0]
    if item.outcome is ItemOutcome.REFUSED:
        assert item.error is not None
        return ("error", type(item.error).__name__, str(item.error))
    created = item.outcome is ItemOutcome.ACCEPTED
    return ("accepted", created, _transfer(item.transfer, created))


def _less_the_batch(writes: dict[str, Any]) -> dict[str, Any]:
    """A batch's writes less what only a batch writes (its own audit row, its id)."""

    def without_batch_id(details: Any) -> Any:  # an audit row's details name it only when set
        return {k: v for k, v in details.items() if k != "batch_id"} if isinstance(details, dict) else details

    audits = [
        (action, entity, actor, entity_id, without_batch_id(details), request_id)
        for action, entity, actor, entity_id, details, request_id in writes["audits"]
        if entity != "transfer_batch"
    ]
    events = [(kind, owners, {**data, "batch_id": None}) for kind, owners, data in writes["events"]]
    return {**writes, "audits": sorted(audits, key=repr), "events": sorted(events, key=repr)}


@settings(
    max_examples=examples(400),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@_examples(ONE_CHANGE)
@given(case=cases())
def test_the_accept_paths_decide_alike(sessions, world, case) -> None:  # type: ignore[no-untyped-def]
    state, request = case
    movement = _movement(world, request)
    key = PRIOR_KEY if state["replay"] is not None and request["key"] else request["key"]
    if state["replay"] == "same" and request["key"]:
        movement = _movement(world, {**request, **PRIOR, "hold": (False, None)})
    pin = PIN if request["right_pin"] else "9999"
    s = sessions()
    s.begin()
    try:
        _build(s, world, state)
        user = s.get_one(User, world.alice)
        caller = TokenCaller(
            world.alice, "jti-diff", "fam-diff", user.token_generation + (0 if state["token_live"] else 1)
        )

        def careful() -> Any:
            return _careful(s, world, movement, key, pin)

        def one_statement() -> Any:
            return accept_in_one_statement(
                s, caller=caller, pin=pin, pin_pepper=PINS.pepper, idempotency_key=key, movement=movement,
                partitions=4, request_id=REQUEST_ID,
            )  # fmt: skip

        def through_api() -> Any:
            return accept_transfer(
                s, caller=caller, load_user=lambda: s.get_one(User, world.alice), idempotency_key=key,
                movement=movement, pin=pin, pin_policy=PINS, partitions=4, request_id=REQUEST_ID,
            )  # fmt: skip

        expected, expected_writes = _in_savepoint(s, world, lambda: _answer(careful))
        assert expected is not None
        fast, fast_writes = _in_savepoint(s, world, lambda: _answer(one_statement))
        # What was covered (pytest --hypothesis-show-statistics): which path decided, and how.
        event(f"careful path: {expected[0]} {expected[1]}")
        event("one statement decided" if fast is not None else "one statement fell back")
        if fast is None:
            assert fast_writes["transfers"] == fast_writes["audits"] == fast_writes["events"] == []
            # The statement is the path for this caller: falling back where the careful path
            # accepts, replays or refuses a reused key means it decided nothing it should have.
            decided = expected[0] == "accepted" or expected[1:2] == ("IdempotencyKeyReused",)
            assert not (_eligible(state, request) and _well_formed(movement, key) and decided), (
                expected,
                "the one statement fell back",
            )
        else:
            assert (fast, fast_writes) == (expected, expected_writes)
        if state["token_live"]:  # a dead token is refused before either path, by the token check
            assert _in_savepoint(s, world, lambda: _answer(through_api)) == (expected, expected_writes)
        # A batch's items come validated by the edge (schema) and take the default hold expiry.
        edge_refusals = ("ValidationFailed", "IdempotencyKeyRequired")
        if _eligible(state, request) and expected[1] not in edge_refusals and movement.hold_expires_in_seconds is None:
            batch, batch_writes = _in_savepoint(s, world, lambda: _batch(s, world, movement, key, pin))
            assert (batch, _less_the_batch(batch_writes)) == (expected, expected_writes)
    finally:
        s.rollback()
        s.close()


def test_a_batch_item_from_someone_elses_account_to_itself_is_a_404_as_in_post_transfers(sessions, world) -> None:  # type: ignore[no-untyped-def]
    state, request = _one_change("source", "bob_usd")  # and the destination is bob_usd too
    movement = _movement(world, request)
    s = sessions()
    s.begin()
    try:
        _build(s, world, state)
        careful, _ = _in_savepoint(s, world, lambda: _answer(lambda: _careful(s, world, movement, NEW_KEY, PIN)))
        batch, _ = _in_savepoint(s, world, lambda: _batch(s, world, movement, NEW_KEY, PIN))
        assert careful is not None and careful[1] == "NotFound"
        assert batch == careful
    finally:
        s.rollback()
        s.close()
