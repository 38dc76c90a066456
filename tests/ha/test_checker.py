"""The checker is only worth its verdicts: a clean history passes, and each kind of violation,
made by hand, fails with the right name."""

from __future__ import annotations

import uuid

from tests.ha.checker import Books, History, verify

A, B = uuid.uuid4(), uuid.uuid4()
ALICE, BOB = uuid.uuid4(), uuid.uuid4()


def _clean() -> tuple[History, Books]:
    history = History()
    for transfer_id, key in ((A, "k-a"), (B, "k-b")):
        history.saw(202)
        history.accept(key, transfer_id)
    history.saw(503)
    history.read(A, "PENDING")
    history.read(A, "COMPLETED")
    history.read(B, "FAILED")
    books = Books(
        status={A: "COMPLETED", B: "FAILED"},
        keys={A: "k-a", B: "k-b"},
        entries={A: 2},
        balances={ALICE: 70, BOB: 30},
        total=100,
    )
    return history, books


def _with(books: Books, **changes: object) -> Books:
    return Books(**{**books.__dict__, **changes})  # type: ignore[arg-type]


def test_a_clean_history_passes() -> None:
    history, books = _clean()
    report = verify(history, books)
    assert report.violations == []
    assert report.summary() == "operations 3, acknowledged 2, lost 0, doubled 0, other violations 0"


def test_an_acknowledged_transfer_missing_from_the_books_is_lost() -> None:
    history, books = _clean()
    report = verify(history, _with(books, status={B: "FAILED"}, keys={B: "k-b"}, entries={}))
    assert len(report.lost) == 1 and str(A) in report.lost[0]


def test_a_transfer_applied_twice_or_a_key_used_twice_is_doubled() -> None:
    history, books = _clean()
    assert verify(history, _with(books, entries={A: 4})).doubled
    twin = uuid.uuid4()
    doubled = _with(books, status={**books.status, twin: "FAILED"}, keys={**books.keys, twin: "k-a"})
    assert any("k-a" in v for v in verify(history, doubled).doubled)


def test_an_accepted_transfer_left_pending_is_a_violation() -> None:
    history, books = _clean()
    report = verify(history, _with(books, status={A: "PENDING", B: "FAILED"}, entries={}))
    assert any("never became final" in v for v in report.other)


def test_books_that_do_not_balance_fail() -> None:
    history, books = _clean()
    assert verify(history, _with(books, balances={ALICE: 80, BOB: 30})).other
    assert verify(history, _with(books, balances={ALICE: 110, BOB: -10})).other


def test_a_read_that_goes_back_or_disagrees_with_the_books_fails() -> None:
    history, books = _clean()
    history.read(A, "PENDING")
    assert any("COMPLETED then PENDING" in v for v in verify(history, books).other)
    history, books = _clean()
    history.read(B, "COMPLETED")
    assert verify(history, books).other


def test_a_500_is_a_violation_even_if_a_retry_succeeded() -> None:
    history, books = _clean()
    history.saw(500)
    assert any("500" in v for v in verify(history, books).other)


def test_a_transfer_whose_key_the_client_never_sent_fails() -> None:
    history, books = _clean()
    history.send("k-a")
    history.send("k-b")
    assert verify(history, books).violations == []
    stranger = uuid.uuid4()
    phantom = _with(books, status={**books.status, stranger: "FAILED"}, keys={**books.keys, stranger: "k-x"})
    assert any("never sent" in v for v in verify(history, phantom).other)


def test_a_sent_key_that_took_effect_without_an_answer_is_allowed_once() -> None:
    history, books = _clean()
    for key in ("k-a", "k-b", "k-timed-out"):
        history.send(key)
    history.saw(0)  # its request got no answer, yet it committed
    late = uuid.uuid4()
    applied = _with(books, status={**books.status, late: "FAILED"}, keys={**books.keys, late: "k-timed-out"})
    assert verify(history, applied).violations == []
    twice = uuid.uuid4()
    doubled = _with(applied, status={**applied.status, twice: "FAILED"}, keys={**applied.keys, twice: "k-timed-out"})
    assert any("k-timed-out" in v for v in verify(history, doubled).doubled)


def test_a_final_transfer_without_its_webhook_fails() -> None:
    history, books = _clean()
    delivered = {A: {"transfer.completed"}, B: {"transfer.failed"}}
    assert verify(history, _with(books, delivered=delivered)).violations == []
    report = verify(history, _with(books, delivered={A: {"transfer.completed"}}))
    assert any(str(B) in v and "webhook" in v for v in report.other)
    wrong = verify(history, _with(books, delivered={A: {"transfer.failed"}, B: {"transfer.failed"}}))
    assert any(str(A) in v for v in wrong.other)


def test_what_the_books_or_the_client_found_wrong_fails() -> None:
    history, books = _clean()
    assert verify(history, _with(books, problems=["audit chain: row 7 altered"])).other
    history.problem("a 503 without Retry-After on POST /transfers")
    assert any("Retry-After" in v for v in verify(history, books).other)


def test_each_fault_gets_its_recovery_measured() -> None:
    history, books = _clean()
    history.unavailable.clear()  # only the fault's own refusal below
    fault = history.inject("primary killed")
    fault.start -= 20  # as if injected 20 s ago
    history.unavailable.append(fault.start + 12)  # the last refusal, 12 s in
    history.heal(fault)
    fault.healed_wall = 1000.0
    report = verify(history, _with(books, final_at={A: 1003.0, B: 990.0}))
    (recovery,) = report.recoveries
    assert recovery.name == "primary killed" and recovery.unanswered == 1
    assert abs(recovery.refused_for - 12) < 0.5 and abs(recovery.lasted - 20) < 0.5
    assert recovery.settled_after_heal == 3.0
    assert "primary killed" in report.render() and "lost 0, doubled 0" in report.render()
