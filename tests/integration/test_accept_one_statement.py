"""The accept path's one statement answers exactly as the careful path (submit_transfer) does:
the same rows when it accepts, nothing written when anything is refused (the token and the PIN
included), one transfer per key."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text, update

from core.config import Settings
from core.errors import DomainError, IdempotencyKeyReused
from core.events import DomainEvent
from core.identity import tokens
from core.identity.pin_checks import PinCheck
from core.identity.tokens import TokenCaller
from core.models import Account, AccountKind, AccountStatus, AuditLog, Transfer, User, UserStatus
from core.resources import Policies
from core.transfers.accept import accept_carefully, accept_in_one_statement, accept_transfer
from core.transfers.idempotency import MoneyMovement
from core.transfers.submit import submit_transfer
from tests.factories import PIN

# The run's PIN policy, as Resources.open builds it from the settings.
PINS = Policies.from_settings(Settings()).pins


def _counts(sessions, user_id: uuid.UUID) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
    with sessions() as s:
        transfers = s.scalar(select(func.count()).select_from(Transfer).where(Transfer.initiated_by == user_id))
        audits = s.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.actor_id == user_id))
        events = s.scalar(select(func.count()).select_from(DomainEvent).where(DomainEvent.owner_ids.any(user_id)))
        return transfers or 0, audits or 0, events or 0


def _caller(user: User, jti: str = "jti-1", family: str = "fam-1") -> TokenCaller:
    return TokenCaller(user_id=user.id, jti=jti, family=family, generation=user.token_generation)


def _one_statement(  # type: ignore[no-untyped-def]
    sessions, user: User, movement: MoneyMovement, key: str | None = None, *, caller: TokenCaller | None = None,
    pin: str = PIN,
):  # fmt: skip
    with sessions.begin() as s:
        return accept_in_one_statement(
            s, caller=caller or _caller(user), pin=pin, pin_pepper=PINS.pepper,
            idempotency_key=key or str(uuid.uuid4()), movement=movement, partitions=4, request_id="req-one",
        )  # fmt: skip


def _careful(sessions, user: User, movement: MoneyMovement):  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        return submit_transfer(
            s, user=s.get_one(User, user.id), idempotency_key=str(uuid.uuid4()), movement=movement,
            partitions=4, request_id="req-careful",
        )  # fmt: skip


def _set_status(sessions, account_id: uuid.UUID, status: AccountStatus) -> None:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        s.execute(update(Account).where(Account.id == account_id).values(status=status))


def test_accepts_with_the_same_rows_as_the_careful_path(sessions, make_customer) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    for hold in (False, True):
        movement = MoneyMovement(alice.account.id, bob.account.id, 250, "USD", "rent", hold, 3600 if hold else None)
        quick = _one_statement(sessions, alice.user, movement)
        careful = _careful(sessions, alice.user, movement)
        assert quick is not None and quick.created and careful.created
        rows = {}
        with sessions() as s:
            for name, accepted in (("quick", quick), ("careful", careful)):
                transfer = s.get_one(Transfer, accepted.transfer.id)
                audit = s.scalars(select(AuditLog).where(AuditLog.entity_id == str(transfer.id))).one()
                event = s.scalars(select(DomainEvent).where(DomainEvent.data["id"].astext == str(transfer.id))).one()
                rows[name] = (transfer, audit, event)
        (qt, qa, qe), (ct, ca, ce) = rows["quick"], rows["careful"]
        same = ("kind", "initiated_by", "request_hash", "source_account_id", "destination_account_id", "amount",
                "currency", "reference", "status", "partition", "hold", "failure_code")  # fmt: skip
        assert {c: getattr(qt, c) for c in same} == {c: getattr(ct, c) for c in same}
        assert (qt.hold_expires_at is None) == (ct.hold_expires_at is None) == (not hold)
        assert qt.request_id == "req-one"
        assert (qa.action, qa.entity_type, qa.actor_id, qa.details, qa.request_id) == (
            ca.action, ca.entity_type, ca.actor_id, ca.details, "req-one",
        )  # fmt: skip
        assert qa.txid > 0  # set by the database, so the sealer can chain it
        assert (qe.event_type, qe.owner_ids) == (ce.event_type, ce.owner_ids)
        assert qe.owner_ids == sorted([alice.user.id, bob.user.id])
        volatile = ("id", "created_at", "updated_at", "hold_expires_at")
        assert {k: v for k, v in qe.data.items() if k not in volatile} == {
            k: v for k, v in ce.data.items() if k not in volatile
        }
        assert qe.data["id"] == str(qt.id) and qe.data["created_at"] == qt.created_at.isoformat()
        assert quick.transfer.created_at == qt.created_at  # the returned row is the stored one


def test_a_transfer_between_own_accounts_has_one_owner(sessions, make_customer) -> None:  # type: ignore[no-untyped-def]
    alice = make_customer()
    with sessions.begin() as s:
        second = Account(user_id=alice.user.id, currency="USD", status=AccountStatus.ACTIVE)
        s.add(second)
    quick = _one_statement(sessions, alice.user, MoneyMovement(alice.account.id, second.id, 10, "USD", None))
    assert quick is not None and quick.created
    with sessions() as s:
        event = s.scalars(select(DomainEvent).where(DomainEvent.data["id"].astext == str(quick.transfer.id))).one()
        assert event.owner_ids == [alice.user.id]


def _frozen_destination(sessions, make_customer, alice, bob) -> MoneyMovement:  # type: ignore[no-untyped-def]
    _set_status(sessions, bob.account.id, AccountStatus.FROZEN)
    return MoneyMovement(alice.account.id, bob.account.id, 10, "USD", None)


def _closed_destination(sessions, make_customer, alice, bob) -> MoneyMovement:  # type: ignore[no-untyped-def]
    _set_status(sessions, bob.account.id, AccountStatus.CLOSED)
    return MoneyMovement(alice.account.id, bob.account.id, 10, "USD", None)


def _frozen_source(sessions, make_customer, alice, bob) -> MoneyMovement:  # type: ignore[no-untyped-def]
    _set_status(sessions, alice.account.id, AccountStatus.FROZEN)
    return MoneyMovement(alice.account.id, bob.account.id, 10, "USD", None)


def _someone_elses_source(sessions, make_customer, alice, bob) -> MoneyMovement:  # type: ignore[no-untyped-def]
    return MoneyMovement(bob.account.id, alice.account.id, 10, "USD", None)


def _other_currency_destination(sessions, make_customer, alice, bob) -> MoneyMovement:  # type: ignore[no-untyped-def]
    euro = make_customer(currency="EUR")
    return MoneyMovement(alice.account.id, euro.account.id, 10, "USD", None)


def _transfer_in_another_currency(sessions, make_customer, alice, bob) -> MoneyMovement:  # type: ignore[no-untyped-def]
    return MoneyMovement(alice.account.id, bob.account.id, 10, "EUR", None)


def _settlement_destination(sessions, make_customer, alice, bob) -> MoneyMovement:  # type: ignore[no-untyped-def]
    with sessions() as s:
        bank = s.scalars(select(Account.id).where(Account.kind == AccountKind.SETTLEMENT, Account.currency == "USD"))
        return MoneyMovement(alice.account.id, bank.first(), 10, "USD", None)


def _missing_destination(sessions, make_customer, alice, bob) -> MoneyMovement:  # type: ignore[no-untyped-def]
    return MoneyMovement(alice.account.id, uuid.uuid4(), 10, "USD", None)


def _same_account(sessions, make_customer, alice, bob) -> MoneyMovement:  # type: ignore[no-untyped-def]
    return MoneyMovement(alice.account.id, alice.account.id, 10, "USD", None)


def _zero_amount(sessions, make_customer, alice, bob) -> MoneyMovement:  # type: ignore[no-untyped-def]
    return MoneyMovement(alice.account.id, bob.account.id, 0, "USD", None)


def _hold_expiry_without_hold(sessions, make_customer, alice, bob) -> MoneyMovement:  # type: ignore[no-untyped-def]
    return MoneyMovement(alice.account.id, bob.account.id, 10, "USD", None, False, 3600)


REFUSALS = [
    _frozen_destination, _closed_destination, _frozen_source, _someone_elses_source, _other_currency_destination,
    _transfer_in_another_currency, _settlement_destination, _missing_destination, _same_account, _zero_amount,
    _hold_expiry_without_hold,
]  # fmt: skip


@pytest.mark.parametrize("refusal", REFUSALS, ids=lambda f: f.__name__.strip("_"))
def test_writes_nothing_where_the_careful_path_refuses(sessions, settings, make_customer, refusal) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    movement = refusal(sessions, make_customer, alice, bob)
    before = _counts(sessions, alice.user.id)
    assert _one_statement(sessions, alice.user, movement) is None
    assert _counts(sessions, alice.user.id) == before
    with pytest.raises(DomainError) as careful:
        _careful(sessions, alice.user, movement)
    with pytest.raises(type(careful.value)) as through_api_path, sessions.begin() as s:
        accept_transfer(
            s, caller=_caller(alice.user), load_user=lambda: s.get_one(User, alice.user.id),
            idempotency_key=str(uuid.uuid4()), movement=movement, pin=PIN, pin_policy=PINS, partitions=4,
        )  # fmt: skip
    assert str(through_api_path.value) == str(careful.value)
    assert _counts(sessions, alice.user.id) == before


def test_unapproved_user_takes_the_careful_path(sessions, make_customer) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(approved=False), make_customer()
    movement = MoneyMovement(alice.account.id, bob.account.id, 10, "USD", None)
    assert _one_statement(sessions, alice.user, movement) is None
    assert _counts(sessions, alice.user.id)[0] == 0


def test_replay_returns_the_transfer_and_another_body_is_refused(sessions, make_customer) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    movement = MoneyMovement(alice.account.id, bob.account.id, 99, "USD", "once")
    first = _one_statement(sessions, alice.user, movement, key="k-replay")
    again = _one_statement(sessions, alice.user, movement, key="k-replay")
    assert first is not None and again is not None
    assert (first.created, again.created) == (True, False)
    assert again.transfer.id == first.transfer.id
    with pytest.raises(IdempotencyKeyReused):
        _one_statement(
            sessions, alice.user, MoneyMovement(alice.account.id, bob.account.id, 98, "USD", "once"), "k-replay"
        )
    assert _counts(sessions, alice.user.id)[0] == 1


def test_a_wrong_pin_counts_and_a_replay_still_wins(sessions, settings, make_customer) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    movement = MoneyMovement(alice.account.id, bob.account.id, 5, "USD", None)

    def accept(key: str, pin: str):  # type: ignore[no-untyped-def]
        with sessions.begin() as s:
            return accept_transfer(
                s, caller=_caller(alice.user), load_user=lambda: s.get_one(User, alice.user.id), idempotency_key=key,
                movement=movement, pin=pin, pin_policy=PINS,
            )  # fmt: skip

    accepted = accept("k-pin", PIN)
    assert accepted.pin is PinCheck.OK and accepted.accepted is not None and accepted.accepted.created
    wrong = accept("k-other", "9999")
    assert (wrong.pin, wrong.accepted) == (PinCheck.WRONG, None)
    with sessions() as s:
        assert s.get_one(User, alice.user.id).pin_failed_attempts == 1
    replay = accept("k-pin", "9999")  # a retry gets its transfer back before the PIN is asked
    assert replay.pin is PinCheck.OK and replay.accepted is not None
    assert (replay.accepted.created, replay.accepted.transfer.id) == (False, accepted.accepted.transfer.id)
    # With a failure on record the right PIN goes the careful way, which resets the counter.
    fresh = accept("k-fresh", PIN)
    assert fresh.accepted is not None and fresh.accepted.created
    with sessions() as s:
        assert s.get_one(User, alice.user.id).pin_failed_attempts == 0


@pytest.mark.commits  # threads on their own connections race on the key's unique index
def test_concurrent_duplicates_make_one_transfer(sessions, settings, make_customer) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    movement = MoneyMovement(alice.account.id, bob.account.id, 7, "USD", None)
    start = threading.Barrier(8)
    results: list[tuple[uuid.UUID, bool]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with sessions.begin() as s:
                start.wait()
                # Hold the insert open a moment so the others block on the key's unique index.
                outcome = accept_transfer(
                    s, caller=_caller(alice.user), load_user=lambda: s.get_one(User, alice.user.id),
                    idempotency_key="k-race", movement=movement, pin=PIN, pin_policy=PINS,
                )  # fmt: skip
                s.execute(text("SELECT pg_sleep(0.05)"))
            assert outcome.accepted is not None
            results.append((outcome.accepted.transfer.id, outcome.accepted.created))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len({transfer_id for transfer_id, _ in results}) == 1
    assert sorted(created for _, created in results) == [False] * 7 + [True]
    with sessions() as s:
        requested = select(func.count()).select_from(AuditLog).where(AuditLog.action == "transfer.requested")
        assert s.scalar(requested.where(AuditLog.actor_id == alice.user.id)) == 1
    assert _counts(sessions, alice.user.id)[0::2] == (1, 1)  # one transfer, one transfer.pending event


def _revoked_access_token(sessions, alice) -> TokenCaller:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        tokens.revoke_token(s, jti="jti-1", expires_at=datetime.now(UTC) + timedelta(hours=1), now=datetime.now(UTC))
    return _caller(alice.user)


def _revoked_family(sessions, alice) -> TokenCaller:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        tokens.revoke_family(s, family="fam-1", expires_at=datetime.now(UTC) + timedelta(hours=1))
    return _caller(alice.user)


def _token_from_before_a_password_change(sessions, alice) -> TokenCaller:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        s.execute(update(User).where(User.id == alice.user.id).values(token_generation=User.token_generation + 1))
    return _caller(alice.user)


def _suspended_user(sessions, alice) -> TokenCaller:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        s.execute(update(User).where(User.id == alice.user.id).values(status=UserStatus.SUSPENDED))
    return _caller(alice.user)


def _pin_failure_on_record(sessions, alice) -> TokenCaller:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        s.execute(update(User).where(User.id == alice.user.id).values(pin_failed_attempts=1))
    return _caller(alice.user)


def _pin_locked(sessions, alice) -> TokenCaller:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        until = datetime.now(UTC) + timedelta(minutes=5)
        s.execute(update(User).where(User.id == alice.user.id).values(pin_locked_until=until))
    return _caller(alice.user)


def _token_of_another_user(sessions, alice) -> TokenCaller:  # type: ignore[no-untyped-def]
    return TokenCaller(user_id=uuid.uuid4(), jti="jti-1", family="fam-1", generation=0)


NOT_ANSWERED_HERE = [
    _revoked_access_token, _revoked_family, _token_from_before_a_password_change, _suspended_user,
    _pin_failure_on_record, _pin_locked, _token_of_another_user,
]  # fmt: skip


@pytest.mark.parametrize("caller_state", NOT_ANSWERED_HERE, ids=lambda f: f.__name__.strip("_"))
def test_a_caller_the_statement_cannot_clear_gets_neither_a_transfer_nor_a_replay(  # type: ignore[no-untyped-def]
    sessions, settings, make_customer, caller_state
) -> None:
    """The token's revocation, the user's generation and status and the PIN's state are checked
    in the statement; a caller that fails any of them is left to the full token check."""
    alice, bob = make_customer(), make_customer()
    movement = MoneyMovement(alice.account.id, bob.account.id, 10, "USD", None)
    assert _one_statement(sessions, alice.user, movement, key="k-live") is not None  # an earlier request
    caller = caller_state(sessions, alice)
    before = _counts(sessions, alice.user.id)
    assert _one_statement(sessions, alice.user, movement, caller=caller) is None
    assert _one_statement(sessions, alice.user, movement, key="k-live", caller=caller) is None  # not even the replay
    assert _counts(sessions, alice.user.id) == before

    class TokenRefused(Exception):
        pass

    def full_check() -> User:
        raise TokenRefused

    with pytest.raises(TokenRefused), sessions.begin() as s:
        accept_transfer(
            s, caller=caller, load_user=full_check, idempotency_key="k-next", movement=movement, pin=PIN,
            pin_policy=PINS,
        )  # fmt: skip


def test_a_wrong_pin_writes_nothing_in_the_statement(sessions, make_customer) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    movement = MoneyMovement(alice.account.id, bob.account.id, 10, "USD", None)
    before = _counts(sessions, alice.user.id)
    assert _one_statement(sessions, alice.user, movement, pin="9999") is None
    assert _counts(sessions, alice.user.id) == before
    assert _one_statement(sessions, alice.user, movement, pin=PIN) is not None  # the same caller, the right PIN


def test_the_careful_path_alone_answers_a_known_user(sessions, settings, make_customer) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_customer(), make_customer()
    movement = MoneyMovement(alice.account.id, bob.account.id, 10, "USD", None)
    with sessions.begin() as s:
        outcome = accept_carefully(
            s, user=s.get_one(User, alice.user.id), idempotency_key="k-careful", movement=movement, pin=PIN,
            pin_policy=PINS,
        )  # fmt: skip
    assert outcome.pin is PinCheck.OK and outcome.accepted is not None and outcome.accepted.created
