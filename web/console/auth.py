"""Who is signed in to the console: an admin, re-read from the database on every request.

The session cookie holds the admin's id, their token generation (a password change ends the
console session as it revokes tokens) and when they were last seen; after IDLE_TIMEOUT without a
request the session is over. The role and status are read again each time: a demoted or
suspended admin loses the console at once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any, TypeVar, cast

from flask import g, redirect, request, session, url_for

from core.models import Role, User, UserStatus
from web.context import request_session

IDLE_TIMEOUT = timedelta(minutes=15)
_KEY = "admin"

F = TypeVar("F", bound=Callable[..., Any])


def sign_in(user: User) -> None:
    session.clear()  # a fresh session (and CSRF token) for every login: no fixation
    session.permanent = True
    session[_KEY] = {"id": str(user.id), "gen": user.token_generation, "seen": time.time()}


def sign_out() -> None:
    session.clear()


def signed_in_admin() -> User | None:
    """The admin of this session, or None (no session, idle too long, or no longer an active admin)."""
    state = session.get(_KEY)
    if not isinstance(state, dict):
        return None
    if time.time() - float(state.get("seen", 0)) > IDLE_TIMEOUT.total_seconds():
        session.clear()
        return None
    try:
        user = request_session().get(User, uuid.UUID(str(state.get("id"))))
    except ValueError:
        user = None
    if (
        user is None
        or user.role != Role.ADMIN
        or user.status == UserStatus.SUSPENDED
        or user.token_generation != state.get("gen")
    ):
        session.clear()
        return None
    state["seen"] = time.time()
    session.modified = True
    return user


def admin_required(view: F) -> F:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        user = signed_in_admin()
        if user is None:
            return redirect(url_for("console.login_page", next=request.path))
        g.console_admin = user
        return view(*args, **kwargs)

    return cast(F, wrapper)


def current_admin() -> User:
    return cast(User, g.console_admin)
