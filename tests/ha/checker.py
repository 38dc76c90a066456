"""A Jepsen-style check of what a client was told against what the books hold after faults.

The client records every acknowledged operation in a History (each accepted transfer with its
idempotency key, each status read); after the faults the database is read once into Books; and
``verify`` compares the two. It is plain data in, plain violations out, so it is tested with
hand-made histories that must fail (tests/ha/test_checker.py)."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field

FINAL = frozenset({"COMPLETED", "FAILED", "VOIDED", "EXPIRED"})
# A status a transfer may go on from: PENDING to anything, HELD to captured, voided or expired.
OPEN = frozenset({"PENDING", "HELD"})


@dataclass(frozen=True)
class Accepted:
    key: str
    transfer_id: uuid.UUID
    at: float


@dataclass(frozen=True)
class Read:
    transfer_id: uuid.UUID
    status: str
    at: float


@dataclass
class History:
    """What the client saw, appended from any thread. Every HTTP status is counted too: a 500
    under a fault is a violation even when the retry later succeeded."""

    accepted: list[Accepted] = field(default_factory=list)
    reads: list[Read] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    unavailable: list[float] = field(default_factory=list)  # when a 503 or no answer came
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def saw(self, status: int) -> None:
        """An HTTP status, or 0 for a request that got no answer."""
        with self._lock:
            self.statuses[status] += 1
            if status in (0, 503):
                self.unavailable.append(time.monotonic())

    def accept(self, key: str, transfer_id: uuid.UUID) -> None:
        with self._lock:
            self.accepted.append(Accepted(key, transfer_id, time.monotonic()))

    def read(self, transfer_id: uuid.UUID, status: str) -> None:
        with self._lock:
            self.reads.append(Read(transfer_id, status, time.monotonic()))


@dataclass(frozen=True)
class Books:
    """The database after the faults healed, for the transfers of the run's own parties."""

    status: dict[uuid.UUID, str]  # every transfer the parties initiated
    keys: dict[uuid.UUID, str]  # its idempotency key
    entries: dict[uuid.UUID, int]  # ledger entries per transfer
    balances: dict[uuid.UUID, int]  # the parties' accounts
    total: int  # what the parties were funded with: money is conserved among them


@dataclass
class Report:
    operations: int
    acknowledged: int
    lost: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)

    @property
    def violations(self) -> list[str]:
        return self.lost + self.doubled + self.other

    def summary(self) -> str:
        return (
            f"operations {self.operations}, acknowledged {self.acknowledged}, "
            f"lost {len(self.lost)}, doubled {len(self.doubled)}, other violations {len(self.other)}"
        )


def verify(history: History, books: Books) -> Report:
    report = Report(operations=sum(history.statuses.values()), acknowledged=len(history.accepted))
    if history.statuses.get(500):
        report.other.append(f"{history.statuses[500]} answers were 500")
    by_key: dict[str, list[uuid.UUID]] = defaultdict(list)
    for transfer_id, key in books.keys.items():
        by_key[key].append(transfer_id)
    for key, ids in by_key.items():
        if len(ids) > 1:
            report.doubled.append(f"key {key} made {len(ids)} transfers")
    for acc in history.accepted:
        status = books.status.get(acc.transfer_id)
        if status is None:
            report.lost.append(f"transfer {acc.transfer_id} (key {acc.key}) was accepted and is gone")
            continue
        if books.keys.get(acc.transfer_id) != acc.key:
            report.other.append(
                f"transfer {acc.transfer_id} answered key {acc.key}, holds {books.keys.get(acc.transfer_id)}"
            )
        if status not in FINAL:
            report.other.append(f"transfer {acc.transfer_id} never became final ({status})")
    for transfer_id, status in books.status.items():
        expected = 2 if status == "COMPLETED" else 0
        if books.entries.get(transfer_id, 0) != expected:
            report.doubled.append(
                f"transfer {transfer_id} {status} has {books.entries.get(transfer_id, 0)} ledger entries"
            )
    if sum(books.balances.values()) != books.total:
        report.other.append(f"balances sum to {sum(books.balances.values())}, funded {books.total}")
    if books.balances and min(books.balances.values()) < 0:
        report.other.append("a balance is negative")
    report.other.extend(_non_monotonic(history.reads, books.status))
    return report


def _non_monotonic(reads: list[Read], final: dict[uuid.UUID, str]) -> list[str]:
    """A read never goes back: once a transfer was seen final it stays so, with the same status,
    which is the one the books hold."""
    seen: dict[uuid.UUID, str] = {}
    problems = []
    for read in sorted(reads, key=lambda r: r.at):
        before = seen.get(read.transfer_id)
        if before is not None and before not in OPEN and read.status != before:
            problems.append(f"transfer {read.transfer_id} read {before} then {read.status}")
        seen[read.transfer_id] = read.status
        if read.status in FINAL and final.get(read.transfer_id) not in (None, read.status):
            problems.append(f"transfer {read.transfer_id} read {read.status}, the books say {final[read.transfer_id]}")
    return problems
