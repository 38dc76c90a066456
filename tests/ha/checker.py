"""A Jepsen-style check of what a client was told against what the books hold after faults.

The client records every request and its answer in a History (each key it sent, each accepted
transfer with its idempotency key, each status read, and the faults with when they were injected
and healed); after the faults the database is read once into Books; and ``verify`` compares the
two. It is plain data in, plain violations out, so it is tested with hand-made histories that
must fail (tests/ha/test_checker.py).

What it holds the books to: every acknowledged transfer exists (lost), with its key, final; no key
made two transfers and no transfer has other than its ledger entries (doubled); no transfer exists
whose key the client never sent (a timed-out request may have taken effect, but only once); the
balances sum to what was funded and none is negative; every read is monotonic and agrees with the
books; every final transfer's webhook was delivered (when the books carry deliveries); no answer
was a 500; whatever the books' own checks found (reconcile, the audit chain)."""

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


@dataclass(frozen=True)
class Op:
    """One request and its answer: ``status`` 0 when none came (timeout, reset)."""

    kind: str
    status: int
    started: float
    ended: float
    key: str | None = None
    transfer_id: uuid.UUID | None = None
    error: str | None = None


@dataclass
class Fault:
    name: str
    start: float  # time.monotonic(), as the history's other times
    start_wall: float  # time.time(), to compare with the database's timestamps
    healed: float | None = None
    healed_wall: float | None = None


@dataclass
class History:
    """What the client saw, appended from any thread. Every HTTP status is counted too: a 500
    under a fault is a violation even when the retry later succeeded."""

    accepted: list[Accepted] = field(default_factory=list)
    reads: list[Read] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    unavailable: list[float] = field(default_factory=list)  # when a 503 or no answer came
    sent: set[str] = field(default_factory=set)  # every idempotency key the client sent
    ops: list[Op] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what the client saw that is wrong in itself
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def saw(self, status: int) -> None:
        """An HTTP status, or 0 for a request that got no answer."""
        with self._lock:
            self.statuses[status] += 1
            if status in (0, 503):
                self.unavailable.append(time.monotonic())

    def send(self, key: str) -> None:
        """Before the first request with ``key``: the system may hold a transfer with it."""
        with self._lock:
            self.sent.add(key)

    def op(
        self,
        kind: str,
        status: int,
        started: float,
        *,
        key: str | None = None,
        transfer_id: uuid.UUID | None = None,
        error: str | None = None,
    ) -> None:
        with self._lock:
            self.ops.append(Op(kind, status, started, time.monotonic(), key, transfer_id, error))

    def problem(self, what: str) -> None:
        with self._lock:
            self.problems.append(what)

    def inject(self, name: str) -> Fault:
        fault = Fault(name, time.monotonic(), time.time())
        with self._lock:
            self.faults.append(fault)
        return fault

    def heal(self, fault: Fault) -> None:
        fault.healed, fault.healed_wall = time.monotonic(), time.time()

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
    # transfer id -> the webhook event types delivered for it; None: webhooks not checked
    delivered: dict[uuid.UUID, set[str]] | None = None
    final_at: dict[uuid.UUID, float] = field(default_factory=dict)  # when it last changed (epoch s)
    problems: list[str] = field(default_factory=list)  # the books' own checks: reconcile, audit chain


@dataclass(frozen=True)
class Recovery:
    """What a fault cost, from the client's side and the books'."""

    name: str
    lasted: float  # injected to healed, seconds
    unanswered: int  # 503s and requests without an answer while it lasted (and 5 s after)
    refused_for: float  # from the injection to the last of those, 0 if none
    settled_after_heal: float | None  # the last transfer accepted before the heal became final this long after it


@dataclass
class Report:
    operations: int
    acknowledged: int
    lost: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)
    recoveries: list[Recovery] = field(default_factory=list)

    @property
    def violations(self) -> list[str]:
        return self.lost + self.doubled + self.other

    def summary(self) -> str:
        return (
            f"operations {self.operations}, acknowledged {self.acknowledged}, "
            f"lost {len(self.lost)}, doubled {len(self.doubled)}, other violations {len(self.other)}"
        )

    def render(self) -> str:
        lines = ["faults (lasted; unanswered requests; writes refused for; settled after the heal):"]
        for r in self.recoveries:
            settled = "-" if r.settled_after_heal is None else f"{r.settled_after_heal:.1f} s"
            lines.append(f"  {r.name}: {r.lasted:.1f} s; {r.unanswered}; {r.refused_for:.1f} s; {settled}")
        lines.append(self.summary())
        lines += [f"  VIOLATION {v}" for v in self.violations]
        return "\n".join(lines)


def verify(history: History, books: Books) -> Report:
    report = Report(operations=sum(history.statuses.values()), acknowledged=len(history.accepted))
    if history.statuses.get(500):
        report.other.append(f"{history.statuses[500]} answers were 500")
    report.other.extend(history.problems)
    report.other.extend(books.problems)
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
    if history.sent:  # a client that records its keys: nothing may exist that it never asked for
        for transfer_id, key in books.keys.items():
            if key not in history.sent:
                report.other.append(f"transfer {transfer_id} has key {key}, which the client never sent")
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
    if books.delivered is not None:
        for acc in history.accepted:
            status = books.status.get(acc.transfer_id)
            if status in FINAL and f"transfer.{status.lower()}" not in books.delivered.get(acc.transfer_id, set()):
                report.other.append(f"transfer {acc.transfer_id} is {status}, its webhook was never delivered")
    report.recoveries = [_recovery(f, history, books) for f in history.faults]
    return report


def _recovery(fault: Fault, history: History, books: Books) -> Recovery:
    healed = fault.healed if fault.healed is not None else fault.start
    during = [t for t in history.unavailable if fault.start <= t <= healed + 5]
    before = [a.transfer_id for a in history.accepted if a.at <= healed and a.transfer_id in books.final_at]
    settled = None
    if before and fault.healed_wall is not None:
        settled = max(0.0, max(books.final_at[t] for t in before) - fault.healed_wall)
    return Recovery(
        name=fault.name,
        lasted=healed - fault.start,
        unanswered=len(during),
        refused_for=(max(during) - fault.start) if during else 0.0,
        settled_after_heal=settled,
    )


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
