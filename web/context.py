"""Per-app resources (core.resources: settings, DB, Redis) and the per-request id that follows a transfer."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import structlog
from flask import Flask, Response, current_app, g, has_request_context, request
from sqlalchemy.orm import Session

from core.config import Settings
from core.resources import Policies, Resources

log = structlog.get_logger("web.access")

REQUEST_ID_HEADER = "X-Request-ID"
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}\Z")


def resources() -> Resources:
    return current_app.extensions["bank"]


def settings() -> Settings:
    return resources().settings


def policies() -> Policies:
    """The app's policies (PINs, logins, OTP, webhooks), built once with its resources."""
    return resources().policies


def request_session() -> Session:
    """The request's one session: the token check reads the user in it and the view's first
    ``transaction()`` continues that transaction, so a request checks out one connection once."""
    session: Session | None = g.get("bank_session")
    if session is None:
        session = g.bank_session = resources().sessions()
    return session


@contextmanager
def transaction() -> Iterator[Session]:
    """One unit of work: commits on success, rolls back on any exception. What the block passed
    to ``publish_after_commit`` runs inside the commit here, once it has succeeded."""
    if not has_request_context():
        with resources().sessions.begin() as session:
            yield session
        return
    session = request_session()
    if not session.in_transaction():
        session.begin()
    try:
        yield session
        session.commit()
    except BaseException:
        # The commit too: a COMMIT that failed (the server dropped the connection) leaves the
        # session unusable until it is rolled back, and the request may still ask the database
        # something (the full token check) before its error is answered.
        session.rollback()
        raise


@contextmanager
def snapshot() -> Iterator[Session]:
    """A read-only unit of work that sees one REPEATABLE READ snapshot. A session of its own:
    the request's has begun already (the token check) and its isolation is set."""
    with resources().sessions() as session:
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        yield session


def _close_request_session(_exc: BaseException | None) -> None:
    session: Session | None = g.pop("bank_session", None)
    if session is not None:
        session.close()  # rolls back whatever a view left open (a read, or an error path)


def request_id() -> str:
    return g.get("request_id") or "-"


def _begin_request() -> None:
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    # A client-supplied id is echoed only if it is safe to put in logs and headers.
    g.started = time.monotonic()
    g.request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else str(uuid.uuid4())
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=g.request_id)


def _end_request(response: Response) -> Response:
    response.headers[REQUEST_ID_HEADER] = request_id()
    # One access line per request: the route template, never the body or the query string.
    rule = request.url_rule.rule if request.url_rule else "<unmatched>"
    if not rule.endswith(("/healthz", "/readyz", "/metrics")):
        log.info(
            "request",
            method=request.method,
            route=rule,
            status=response.status_code,
            duration_ms=round((time.monotonic() - g.get("started", time.monotonic())) * 1000, 1),
        )
    return response


def init_app(app: Flask, res: Resources) -> None:
    app.extensions["bank"] = res
    app.before_request(_begin_request)
    app.after_request(_end_request)
    app.teardown_request(_close_request_session)
