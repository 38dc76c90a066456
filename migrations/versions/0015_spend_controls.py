"""spend controls: credit lines, velocity limits and their use, balance monitors, failure details

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 09:55:00

A customer account may have a credit line: its available balance (balance - held + credit_limit)
never goes below zero, so its balance goes down to -credit_limit and no further. The CHECKs that
kept customer balances >= 0 and held <= balance give way to one that says exactly that, with one
exception: an admin may lower a line below what is drawn, and the account is then over its line
(over_credit_line) until it is back within. A trigger keeps that flag, so every writer of a
balance (set-based settlement, captures, deposits) shares one definition: lowering the line below
what is drawn sets it, being back within (available >= 0) clears it.

Velocity limits: the bank's caps (bank_*) and the owner's own lower limits (own_*); the limit in
force is the lower of the two (LEAST ignores NULLs: NULL is "none"). account_usage keeps each
account's outgoing use per UTC day and month (a running total written under the account's row
lock, with the balance), so deciding a limit never scans an account's history. It is filled here
from the transfers settled so far.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MAX_AMOUNT = 2**53 - 1
LIMITS = ("per_transfer", "daily_outgoing", "monthly_outgoing")

_OVER_LINE_FUNCTION = """
CREATE FUNCTION accounts_credit_line_state() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.balance - NEW.held_amount + NEW.credit_limit >= 0 THEN
        NEW.over_credit_line := false;
    ELSIF NEW.credit_limit < OLD.credit_limit THEN
        NEW.over_credit_line := true;
    END IF;
    RETURN NEW;
END $$
"""
_OVER_LINE_TRIGGER = """
CREATE TRIGGER accounts_credit_line_state BEFORE UPDATE OF balance, held_amount, credit_limit ON accounts
FOR EACH ROW EXECUTE FUNCTION accounts_credit_line_state()
"""

_BACKFILL_USAGE = """
INSERT INTO account_usage (account_id, period, starts_on, used)
SELECT t.source_account_id, p.period, p.starts_on,
       sum(CASE WHEN t.status = 'HELD' THEN t.amount ELSE coalesce(t.captured_amount, t.amount) END)
  FROM transfers t
 CROSS JOIN LATERAL (VALUES ('DAY', CAST(t.created_at AT TIME ZONE 'UTC' AS date)),
                            ('MONTH', CAST(date_trunc('month', t.created_at AT TIME ZONE 'UTC') AS date)))
       AS p(period, starts_on)
 WHERE t.kind = 'TRANSFER' AND t.status IN ('COMPLETED', 'HELD')
 GROUP BY t.source_account_id, p.period, p.starts_on
"""


def upgrade() -> None:
    op.add_column("accounts", sa.Column("credit_limit", sa.BigInteger(), server_default="0", nullable=False))
    op.add_column(
        "accounts", sa.Column("over_credit_line", sa.Boolean(), server_default=sa.text("false"), nullable=False)
    )
    for owner in ("bank", "own"):
        for limit in LIMITS:
            op.add_column("accounts", sa.Column(f"{owner}_{limit}", sa.BigInteger(), nullable=True))
            op.create_check_constraint(
                op.f(f"ck_accounts_{owner}_{limit}_range"),
                "accounts",
                f"{owner}_{limit} IS NULL OR {owner}_{limit} BETWEEN 0 AND {MAX_AMOUNT}",
            )
    op.create_check_constraint(
        op.f("ck_accounts_credit_limit_range"), "accounts", f"credit_limit BETWEEN 0 AND {MAX_AMOUNT}"
    )
    op.create_check_constraint(
        op.f("ck_accounts_credit_line_customers_only"), "accounts", "credit_limit = 0 OR kind = 'CUSTOMER'"
    )
    op.drop_constraint(op.f("ck_accounts_customer_balance_nonneg"), "accounts", type_="check")
    op.drop_constraint(op.f("ck_accounts_held_within_balance"), "accounts", type_="check")
    op.create_check_constraint(
        op.f("ck_accounts_within_credit_line"),
        "accounts",
        "kind = 'SETTLEMENT' OR over_credit_line OR balance - held_amount + credit_limit >= 0",
    )
    op.execute(_OVER_LINE_FUNCTION)
    op.execute(_OVER_LINE_TRIGGER)

    op.add_column("transfers", sa.Column("failure_detail", postgresql.JSONB(), nullable=True))

    op.create_table(
        "account_usage",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("period", sa.String(length=5), nullable=False),
        sa.Column("starts_on", sa.Date(), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("period IN ('DAY', 'MONTH')", name=op.f("ck_account_usage_period_kind")),
        sa.CheckConstraint("used >= 0", name=op.f("ck_account_usage_used_nonneg")),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_account_usage_account_id_accounts")),
        sa.PrimaryKeyConstraint("account_id", "period", "starts_on", name=op.f("pk_account_usage")),
    )
    op.execute(_BACKFILL_USAGE)

    op.create_table(
        "balance_monitors",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("field", sa.String(length=17), nullable=False),
        sa.Column("operator", sa.String(length=3), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_triggered_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("field IN ('balance', 'available_balance')", name=op.f("ck_balance_monitors_field_kind")),
        sa.CheckConstraint("operator IN ('lt', 'lte', 'gt', 'gte')", name=op.f("ck_balance_monitors_operator_kind")),
        sa.CheckConstraint(
            f"value BETWEEN -{MAX_AMOUNT} AND {MAX_AMOUNT}", name=op.f("ck_balance_monitors_value_json_safe")
        ),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_balance_monitors_account_id_accounts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_balance_monitors")),
    )
    op.create_index(op.f("ix_balance_monitors_account_id"), "balance_monitors", ["account_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_balance_monitors_account_id"), table_name="balance_monitors")
    op.drop_table("balance_monitors")
    op.drop_table("account_usage")
    op.drop_column("transfers", "failure_detail")
    op.execute("DROP TRIGGER accounts_credit_line_state ON accounts")
    op.execute("DROP FUNCTION accounts_credit_line_state()")
    op.drop_constraint(op.f("ck_accounts_within_credit_line"), "accounts", type_="check")
    op.create_check_constraint(
        op.f("ck_accounts_held_within_balance"), "accounts", "held_amount <= balance OR kind = 'SETTLEMENT'"
    )
    op.create_check_constraint(
        op.f("ck_accounts_customer_balance_nonneg"), "accounts", "balance >= 0 OR kind = 'SETTLEMENT'"
    )
    op.drop_constraint(op.f("ck_accounts_credit_line_customers_only"), "accounts", type_="check")
    op.drop_constraint(op.f("ck_accounts_credit_limit_range"), "accounts", type_="check")
    for owner in ("bank", "own"):
        for limit in LIMITS:
            op.drop_constraint(op.f(f"ck_accounts_{owner}_{limit}_range"), "accounts", type_="check")
            op.drop_column("accounts", f"{owner}_{limit}")
    op.drop_column("accounts", "over_credit_line")
    op.drop_column("accounts", "credit_limit")
