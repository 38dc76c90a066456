"""identity security: login throttles per client address, durable token revocations

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27 05:00:00

- login_throttles: the key becomes ``throttle_key`` (an email-wide row keeps the email's
  digest as its key; a row per (email, client address) gets a digest of both), and every
  row names its email in ``email_digest``, so unlocking an email clears all of its rows.
- revoked_tokens: logged-out access tokens, revoked token families and spent refresh
  tokens, kept until the token would have expired, so revocations survive a Redis loss.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column("login_throttles", "email_digest", new_column_name="throttle_key")
    op.add_column("login_throttles", sa.Column("email_digest", sa.String(length=64), nullable=True))
    op.execute("UPDATE login_throttles SET email_digest = throttle_key")
    op.alter_column("login_throttles", "email_digest", nullable=False)
    op.create_index(op.f("ix_login_throttles_email_digest"), "login_throttles", ["email_digest"])
    op.create_table(
        "revoked_tokens",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("token_id", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "kind IN ('access', 'family', 'refresh_used')", name=op.f("ck_revoked_tokens_revoked_token_kind")
        ),
        sa.PrimaryKeyConstraint("kind", "token_id", name=op.f("pk_revoked_tokens")),
    )
    op.create_index(op.f("ix_revoked_tokens_expires_at"), "revoked_tokens", ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_revoked_tokens_expires_at"), table_name="revoked_tokens")
    op.drop_table("revoked_tokens")
    op.drop_index(op.f("ix_login_throttles_email_digest"), table_name="login_throttles")
    op.execute("DELETE FROM login_throttles WHERE throttle_key <> email_digest")
    op.drop_column("login_throttles", "email_digest")
    op.alter_column("login_throttles", "throttle_key", new_column_name="email_digest")
