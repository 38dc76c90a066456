"""Token revocation state in Postgres (``revoked_tokens``), shared by every API process.

Each login starts a token *family* (``fam`` claim) that its access and refresh tokens share;
a refresh rotates within the family. A row lives until the token it names would have
expired anyway (then any process may prune it), so the table stays small:

- ``access``        one revoked access token (logout), by ``jti``;
- ``family``        every token of one login (logout, refresh-token reuse), by ``fam``;
- ``refresh_used``  a refresh token already exchanged, by ``jti``; a second use is theft.

Postgres, not Redis: a revocation must survive a Redis restart or flush (issue 10, item 10),
and the check rides on the user-row query every authenticated request makes anyway, so it
costs no extra round trip. A password change bumps ``users.token_generation`` instead.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, bindparam, delete, exists, func, or_, select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from core import audit
from core.identity.models import RevokedToken
from core.models import User, UserStatus

ACCESS, FAMILY, REFRESH_USED = "access", "family", "refresh_used"
PRUNE_BATCH = 100


@dataclass(frozen=True)
class TokenCaller:
    """The caller as a signed, unexpired access token names it. Not yet checked: revocation,
    the user's token generation and the user's status; ``LIVE_CALLER`` checks those in SQL."""

    user_id: uuid.UUID
    jti: str
    family: str
    generation: int

    def params(self) -> dict[str, object]:
        return {
            "caller_id": self.user_id,
            "caller_jti": self.jti,
            "caller_family": self.family,
            "caller_generation": self.generation,
        }


# A WHERE clause on ``users`` that holds only for the caller of a live token: the same checks as
# the request's token check (user_and_revoked, then the generation and the user's status), so a
# statement can fold them into its own round trip. Binds TokenCaller.params().
LIVE_CALLER = f"""users.id = :caller_id AND users.token_generation = :caller_generation
  AND users.status = '{UserStatus.ACTIVE}'
  AND NOT EXISTS (
    SELECT 1 FROM revoked_tokens r
    WHERE (r.kind = '{ACCESS}' AND r.token_id = :caller_jti) OR (r.kind = '{FAMILY}' AND r.token_id = :caller_family)
  )"""  # noqa: S608 -- only this module's enum constants are formatted in; the caller's values are bind parameters


# Built once: every authenticated request runs it, and building it cost more than running it.
_USER_AND_REVOKED = select(
    User,
    exists()
    .where(
        or_(
            and_(RevokedToken.kind == ACCESS, RevokedToken.token_id == bindparam("jti")),
            and_(RevokedToken.kind == FAMILY, RevokedToken.token_id == bindparam("family")),
        )
    )
    .label("revoked"),
).where(User.id == bindparam("user_id"))


def user_and_revoked(session: Session, *, user_id: uuid.UUID, jti: str, family: str) -> tuple[User | None, bool]:
    """The token's user (None if gone) and whether the token or its family is revoked, in one query."""
    row = session.execute(_USER_AND_REVOKED, {"user_id": user_id, "jti": jti, "family": family}).one_or_none()
    if row is None:
        return None, False
    return row[0], bool(row[1])


def revoke_token(session: Session, *, jti: str, expires_at: datetime, now: datetime) -> None:
    _revoke(session, ACCESS, jti, expires_at)
    prune(session, now)


def revoke_family(session: Session, *, family: str, expires_at: datetime) -> None:
    _revoke(session, FAMILY, family, expires_at)


def claim_refresh(session: Session, *, jti: str, expires_at: datetime, now: datetime) -> bool:
    """Mark a refresh token as exchanged. False if it already was: the caller must revoke its family.

    A concurrent second claim waits on the first one's row and then finds it: one winner.
    """
    claimed = session.scalar(
        insert(RevokedToken)
        .values(kind=REFRESH_USED, token_id=jti, expires_at=expires_at)
        .on_conflict_do_nothing()
        .returning(RevokedToken.token_id)
    )
    prune(session, now)
    return claimed is not None


def spend_refresh(
    session: Session,
    *,
    jti: str,
    family: str,
    user_id: uuid.UUID,
    expires_at: datetime,
    family_expires_at: datetime,
    now: datetime,
    request_id: str | None = None,
) -> bool:
    """Exchange a refresh token, once. A second use (a sign of theft) revokes every token of its
    login, audited, and returns False: the caller refuses it."""
    if claim_refresh(session, jti=jti, expires_at=expires_at, now=now):
        return True
    revoke_family(session, family=family, expires_at=family_expires_at)
    audit.record(
        session,
        action="auth.refresh_reused",
        entity_type="user",
        entity_id=user_id,
        actor_id=None,
        request_id=request_id,
        details={"token_family_revoked": True},
    )
    return False


def prune(session: Session, now: datetime) -> int:
    """Delete a few rows whose tokens have expired. Called where rows are added, so the table
    shrinks as fast as it grows without a scheduled job; SKIP LOCKED keeps pruners apart."""
    stale = (
        select(RevokedToken.kind, RevokedToken.token_id)
        .where(RevokedToken.expires_at < now)
        .limit(PRUNE_BATCH)
        .with_for_update(skip_locked=True)
    )
    deleted = session.execute(
        delete(RevokedToken)
        .where(tuple_(RevokedToken.kind, RevokedToken.token_id).in_(stale))
        .returning(RevokedToken.token_id)
    ).all()
    return len(deleted)


def _revoke(session: Session, kind: str, token_id: str, expires_at: datetime) -> None:
    stmt = insert(RevokedToken).values(kind=kind, token_id=token_id, expires_at=expires_at)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=[RevokedToken.kind, RevokedToken.token_id],
            set_={"expires_at": func.greatest(RevokedToken.expires_at, stmt.excluded.expires_at)},
        )
    )
