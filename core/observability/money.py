"""Holds, captures and refunds as Postgres records them: the money counters the backlog exporter
derives instead of incrementing in the processes that move the money.

Counted where it happens, a capture (the API), an expiry (the maintenance pool) and a placed hold
(a settlement pool) would be three processes' counters, each lost with its process or missed by
an increment after a commit that died; read from the rows they commit, the totals equal Postgres
by construction. Each total only grows: a hold ends once (one transfer_actions row per transfer),
a COMPLETED refund stays COMPLETED. The scans use the actions table (one row per ended hold), the
partial index of HELD transfers, and the refunds (refund_of is set on refunds only).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.orm import Session

HOLD_OUTCOMES = ("placed", "captured", "voided", "expired")
_ACTION_OUTCOME = {"CAPTURE": "captured", "VOID": "voided", "EXPIRE": "expired"}

# Every hold that was placed is HELD now or ended by exactly one action.
_HOLDS = text(
    "SELECT t.currency, a.action::text, count(*), coalesce(sum(a.amount), 0), coalesce(sum(t.amount), 0)"
    " FROM transfer_actions a JOIN transfers t ON t.id = a.transfer_id GROUP BY 1, 2"
    " UNION ALL"
    " SELECT currency, 'HELD', count(*), 0, coalesce(sum(amount), 0) FROM transfers"
    " WHERE status = 'HELD' GROUP BY 1"
)
_REFUNDS = text(
    "SELECT currency, count(*), coalesce(sum(amount), 0) FROM transfers"
    " WHERE refund_of IS NOT NULL AND status = 'COMPLETED' GROUP BY 1"
)


@dataclass(frozen=True)
class MoneyTotals:
    holds: dict[str, int] = field(default_factory=dict)  # outcome -> count
    hold_amounts: dict[tuple[str, str], int] = field(default_factory=dict)  # (currency, outcome) -> minor units
    captured: dict[str, int] = field(default_factory=dict)  # currency -> minor units moved by captures
    refunds: int = 0
    refunded: dict[str, int] = field(default_factory=dict)  # currency -> minor units


def measure_money(session: Session) -> MoneyTotals:
    holds: dict[str, int] = dict.fromkeys(HOLD_OUTCOMES, 0)
    amounts: dict[tuple[str, str], int] = defaultdict(int)
    captured: dict[str, int] = defaultdict(int)
    for currency, action, count, action_amount, hold_amount in session.execute(_HOLDS):
        holds["placed"] += count
        amounts[(currency, "placed")] += int(hold_amount)  # sum(bigint) is numeric
        if action == "HELD":
            continue
        outcome = _ACTION_OUTCOME[action]
        holds[outcome] += count
        amounts[(currency, outcome)] += int(action_amount)  # captured, or released by a void or expiry
        if outcome == "captured":
            captured[currency] += int(action_amount)
    refunds, refunded = 0, {}
    for currency, count, amount in session.execute(_REFUNDS):
        refunds += count
        refunded[currency] = int(amount)
    return MoneyTotals(holds, dict(amounts), dict(captured), refunds, refunded)
