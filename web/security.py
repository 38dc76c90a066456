"""JWT auth (flask-jwt-extended): identity is the user id; the role is re-read from the DB.

Tokens carry only ids and bookkeeping (``sub``, ``jti``, ``fam``: the login's token family,
``gen``: the user's token generation), never a secret or a role. A token is refused when:
its signature, algorithm (HS256 only, never ``none``) or expiry fails; its ``jti`` or family
is on the Redis denylist (logout, refresh-token reuse); or its ``gen`` is not the user's
current ``token_generation`` (a password change revokes everything).

Key rotation: new tokens are signed with ``JWT_SECRET_KEY`` and name it in the ``kid``
header; a token whose ``kid`` names ``JWT_PREVIOUS_SECRET_KEY`` is verified with that key,
so tokens issued before a rotation keep working until they expire.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import Any, TypeVar, cast

import flask_jwt_extended
import jwt as pyjwt
import structlog
from flask import Flask, Response, current_app, g, request
from flask_jwt_extended import (
    JWTManager,
    create_access_token,
    create_refresh_token,
    verify_jwt_in_request,
)
from jwt.algorithms import HMACAlgorithm
from sqlalchemy.orm import Session

from core.db import database_now, database_unavailable
from core.errors import Forbidden
from core.identity import tokens
from core.identity.tokens import TokenCaller
from core.models import Role, User, UserStatus
from web.context import request_session, settings
from web.problems import problem

F = TypeVar("F", bound=Callable[..., Any])

jwt = JWTManager()


def key_id(secret: str) -> str:
    """A public name for a signing key (a hash prefix: it reveals nothing about the key)."""
    return hashlib.sha256(b"bank-jwt-kid:" + secret.encode()).hexdigest()[:16]


def init_app(app: Flask) -> None:
    s = app.extensions["bank"].settings
    app.config.update(
        JWT_SECRET_KEY=s.jwt_secret_key.get_secret_value(),
        JWT_ALGORITHM="HS256",
        JWT_DECODE_ALGORITHMS=["HS256"],  # never "none", never a client-chosen algorithm
        JWT_TOKEN_LOCATION=["headers"],
        JWT_COOKIE_CSRF_PROTECT=False,  # bearer tokens only: no cookie, so no CSRF value in the token
        JWT_ACCESS_TOKEN_EXPIRES=timedelta(minutes=s.access_token_minutes),
        JWT_REFRESH_TOKEN_EXPIRES=timedelta(days=s.refresh_token_days),
        JWT_ERROR_MESSAGE_KEY="detail",
    )
    jwt.init_app(app)
    previous = s.jwt_previous_secret_key
    app.extensions[_VERIFIER] = _Verifier(
        s.jwt_secret_key.get_secret_value(), previous.get_secret_value() if previous is not None else None
    )


# ---- issuing ---------------------------------------------------------------------------


def issue_tokens(user: User, *, family: str | None = None) -> dict[str, Any]:
    """A new access and refresh token pair. A login starts a family; a refresh continues it."""
    claims = {"fam": family or uuid.uuid4().hex, "gen": user.token_generation}
    return {
        "access_token": create_access_token(identity=str(user.id), additional_claims=claims),
        "refresh_token": create_refresh_token(identity=str(user.id), additional_claims=claims),
        "token_type": "Bearer",
        "expires_in": settings().access_token_minutes * 60,
    }


@jwt.additional_headers_loader
def _kid_header(_identity: Any) -> dict[str, str]:
    return {"kid": key_id(settings().jwt_secret_key.get_secret_value())}


@jwt.decode_key_loader
def _decode_key(header: dict[str, Any], _payload: dict[str, Any]) -> str:
    return cast(_Verifier, current_app.extensions[_VERIFIER]).key_for(header)


# ---- verifying -------------------------------------------------------------------------


_VERIFIER = "bank_jwt_verifier"
_HEADERS_KEPT = 8  # distinct token headers whose key is remembered: ours are one per signing key


class _PreparedKeyHMAC(HMACAlgorithm):
    """HS256 that prepares each key once. PyJWT prepares the key on every decode (its checks that
    an HMAC secret is not a PEM, SSH or DER public key, and not a JWK, about a fifth of a
    decode's CPU); the keys here are the app's own one or two secrets, so the answer is kept."""

    def __init__(self) -> None:
        super().__init__(HMACAlgorithm.SHA256)
        self._prepared: dict[str | bytes, bytes] = {}

    def prepare_key(self, key: str | bytes) -> bytes:
        prepared = self._prepared.get(key)
        if prepared is None:
            prepared = super().prepare_key(key)  # raises for a key that is not an HMAC secret
            if len(self._prepared) < 4:
                self._prepared[key] = prepared
        return prepared


class _Verifier:
    """The bearer tokens' signature and expiry, checked with what one app's settings fix built
    once (no per-request setup): its keys, a PyJWT with the prepared-key HS256, and which key a
    token header (its ``kid``) names, remembered by the header's encoded text, so the header is
    not decoded a second time before the decode proper (which checks it again)."""

    def __init__(self, current: str, previous: str | None) -> None:
        self._current = current
        self._previous = previous
        self._previous_kid = key_id(previous) if previous is not None else None
        self._jwt = pyjwt.PyJWT()
        jws = self._jwt._jws  # PyJWT's own PyJWS; register_algorithm is its public API
        jws.unregister_algorithm("HS256")
        jws.register_algorithm("HS256", _PreparedKeyHMAC())
        self._key_by_header: dict[str, str] = {}

    def key_for(self, header: dict[str, Any]) -> str:
        if self._previous is not None and header.get("kid") == self._previous_kid:
            return self._previous
        # Any other kid (or none) is checked against the current key, and fails if it was not signed with it.
        return self._current

    def claims(self, token: str) -> dict[str, Any]:
        """The verified claims; raises PyJWTError for a token that is not valid now."""
        encoded_header = token.partition(".")[0]
        key = self._key_by_header.get(encoded_header)
        if key is None:
            key = self.key_for(pyjwt.get_unverified_header(token))
            if len(self._key_by_header) < _HEADERS_KEPT:  # bounded: a client may send any header
                self._key_by_header[encoded_header] = key
        return self._jwt.decode(token, key, algorithms=["HS256"])


def signed_claims() -> dict[str, Any] | None:
    """The claims of the request's bearer token if its signature and expiry are valid, else None;
    decoded once per request (one PyJWT decode, not flask-jwt-extended's three). Revocation is
    not checked here: the rate limiter names the caller with it, and ``token_caller`` feeds a
    statement that checks revocation itself."""
    if "bank_signed_claims" not in g:
        g.bank_signed_claims = _decode_bearer(request.headers.get("Authorization", ""))
    return cast(dict[str, Any] | None, g.bank_signed_claims)


def _decode_bearer(header: str) -> dict[str, Any] | None:
    parts = header.split()  # as flask-jwt-extended reads the header
    if len(parts) != 2 or parts[0] != "Bearer":
        return None
    try:
        claims = cast(_Verifier, current_app.extensions[_VERIFIER]).claims(parts[1])
    except pyjwt.PyJWTError:
        return None
    return claims if isinstance(claims.get("sub"), str) else None


def token_caller() -> TokenCaller | None:
    """The caller a signed, unexpired access token names, with every claim the full check reads
    well formed; else None (then only the full check answers). Worked out once per request."""
    if "bank_token_caller" not in g:
        g.bank_token_caller = _token_caller()
    return cast(TokenCaller | None, g.bank_token_caller)


def _token_caller() -> TokenCaller | None:
    claims = signed_claims()
    if claims is None or claims.get("type") != "access":
        return None
    jti, family, generation = claims.get("jti"), claims.get("fam"), claims.get("gen")
    if not (isinstance(jti, str) and isinstance(family, str) and family):
        return None
    if not isinstance(generation, int) or isinstance(generation, bool):
        return None
    try:
        user_id = uuid.UUID(claims["sub"])
    except ValueError:
        return None
    return TokenCaller(user_id=user_id, jti=jti, family=family, generation=generation)


def checked_current_user() -> User:
    """The full token check (flask-jwt-extended, once per request), then the caller."""
    if not _token_checked():
        verify_jwt_in_request()
    return current_user()


def _token_checked() -> bool:
    return flask_jwt_extended.utils.get_jwt_request_location() is not None


def token_checked_in_view(view: F) -> F:
    """``jwt_required()`` for a view that folds the token's revocation and user checks into its
    own statement (passing ``token_caller()``) and calls ``checked_current_user()`` when that
    statement does not answer. The signature is checked here. A token that is not live still
    gets its 401 before any other refusal: the full check runs before an error leaves."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        caller = token_caller()
        if caller is None:
            verify_jwt_in_request()
        else:
            structlog.contextvars.bind_contextvars(user_id=str(caller.user_id))
        try:
            return view(*args, **kwargs)
        except Exception as error:
            # A database that is unreachable or dropped the connection is a 503 whatever the token
            # is: asking it again for the full check would only turn that into another error.
            if not _token_checked() and not database_unavailable(error):
                verify_jwt_in_request()  # raises for a token that is not live; else the view's error stands
            raise

    return cast(F, wrapper)


def _load_user_row(user_id: Any) -> User | None:
    try:
        uid = uuid.UUID(user_id)
    except (ValueError, TypeError, AttributeError):
        return None
    # In the request's session: the view's transaction continues this one (one checkout).
    return request_session().get(User, uid)


@jwt.token_in_blocklist_loader
def _is_revoked(_header: dict[str, Any], payload: dict[str, Any]) -> bool:
    """Revoked in Postgres (logout, reused refresh token) or issued before the user's last password change.

    One query reads the user row and the revocation together. Fails closed: if Postgres cannot
    be asked, the request fails (503) rather than let a revoked token in.
    """
    if not payload.get("fam") or "gen" not in payload:
        return True  # not issued by issue_tokens() (e.g. before token families existed)
    try:
        uid = uuid.UUID(payload.get("sub"))
    except (ValueError, TypeError, AttributeError):
        return True
    # In the request's session: the view's transaction continues this one (one checkout).
    user, revoked = tokens.user_and_revoked(
        request_session(), user_id=uid, jti=str(payload.get("jti")), family=str(payload["fam"])
    )
    if revoked:
        return True
    g.bank_token_user = user  # reused by the user loader below: one query per request
    return user is not None and payload.get("gen") != user.token_generation


@jwt.user_lookup_loader
def _load_user(_header: dict[str, Any], payload: dict[str, Any]) -> User | None:
    user = g.pop("bank_token_user", None) or _load_user_row(payload.get("sub"))
    if user is None or user.status == UserStatus.SUSPENDED:
        return None
    structlog.contextvars.bind_contextvars(user_id=str(user.id))  # every later log line of this request
    return cast(User, user)


def _unauthorized(detail: str) -> Response:
    return problem(401, "UNAUTHORIZED", detail, headers={"WWW-Authenticate": "Bearer"})


@jwt.user_lookup_error_loader
def _user_gone(_header: dict[str, Any], _payload: dict[str, Any]) -> Response:
    return _unauthorized("user no longer exists or is suspended")


@jwt.unauthorized_loader
def _missing(reason: str) -> Response:
    return _unauthorized("missing or malformed Authorization header")


@jwt.invalid_token_loader
def _invalid(reason: str) -> Response:
    return _unauthorized("invalid token")


@jwt.expired_token_loader
def _expired(_header: dict[str, Any], _payload: dict[str, Any]) -> Response:
    return _unauthorized("token has expired")


@jwt.revoked_token_loader
def _revoked(_header: dict[str, Any], _payload: dict[str, Any]) -> Response:
    return _unauthorized("token has been revoked")


@jwt.needs_fresh_token_loader
def _not_fresh(_header: dict[str, Any], _payload: dict[str, Any]) -> Response:
    return _unauthorized("fresh token required")


@jwt.token_verification_failed_loader
def _claims_failed(_header: dict[str, Any], _payload: dict[str, Any]) -> Response:
    return _unauthorized("invalid token")


def current_user() -> User:
    """The caller, as the token check loaded it (flask-jwt-extended's user lookup)."""
    return cast(User, flask_jwt_extended.current_user)


def admin_required(view: F) -> F:
    """Checks the role from the database on every call: a demoted admin loses access at once."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        verify_jwt_in_request()
        if current_user().role != Role.ADMIN:
            raise Forbidden("admin role required")
        return view(*args, **kwargs)

    return cast(F, wrapper)


def revoke_current(session: Session, payload: dict[str, Any]) -> None:
    """Logout: deny this token until it expires, and its whole family (so its refresh token too)."""
    now = database_now(session)
    tokens.revoke_token(session, jti=payload["jti"], expires_at=token_expiry(payload), now=now)
    if payload.get("fam"):
        tokens.revoke_family(session, family=payload["fam"], expires_at=family_expiry(now))


def token_expiry(payload: dict[str, Any]) -> datetime:
    return datetime.fromtimestamp(int(payload["exp"]) + 1, UTC)


def family_expiry(now: datetime) -> datetime:
    """When every token of a family started by now has expired (its last refresh token)."""
    return now + timedelta(days=settings().refresh_token_days, seconds=1)
