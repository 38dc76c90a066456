"""The console's pages and actions. Thin: each action checks its form (CSRF, then the API's schema)
and calls the core service the API calls, in one transaction, then redirects (post/redirect/get)."""

from __future__ import annotations

import uuid
from datetime import UTC, timedelta
from typing import Any, TypeVar

from flask import abort, flash, redirect, render_template, request, url_for
from flask import session as cookie_session
from flask_wtf import FlaskForm
from marshmallow import Schema, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from core import audit, statements
from core import metadata as metadata_rules
from core.accounts import limit_settings
from core.accounts import service as accounts
from core.accounts.limits import CREDIT_LIMIT, LIMIT_NAMES
from core.after_commit import publish_after_commit
from core.audit import leaf, proofs
from core.audit.merkle import verify_proof
from core.audit.roots import get_root
from core.db import database_now
from core.errors import DomainError
from core.identity import kyc, otp, users
from core.identity import login as logins
from core.models import Account, KycStatus, LedgerEntry, Role, Transfer, TransferStatus, User
from core.notifications import OtpMessage, make_notifier
from core.pagination import newest_first, paginate
from core.transfers import queries
from core.webhooks import service as webhooks
from core.webhooks.models import WebhookDelivery, WebhookEndpoint
from web.auth import client_address
from web.console import health
from web.console.auth import admin_required, current_admin, sign_in, sign_out
from web.console.blueprint import bp
from web.console.forms import ActionForm, KycForm, LimitsForm, LoginForm, OtpForm, ReasonForm
from web.context import policies, request_id, resources, settings, snapshot, transaction
from web.hardening import raw_body
from web.schemas import BankLimitsIn, KycDecisionIn, LoginIn, OtpVerifyIn, ReasonIn, StatementArgs
from worker.webhooks import enqueue_delivery

PAGE_SIZE = 50
ADMINS_ONLY = "The console is for the bank's administrators only."
OTP_CHALLENGE = "otp_challenge"
NUL_REFUSED = "Must be text without NUL characters."
CSRF_REFUSED = "The form was missing its CSRF token or it had expired. Reload the page and try again."

_Row = TypeVar("_Row")


# ---- helpers ---------------------------------------------------------------------------------


def _csrf_refused(form: FlaskForm) -> bool:
    # Flask-WTF puts a missing, expired or foreign token on the form's csrf_token field.
    return bool(form.meta.csrf and not form.validate() and getattr(form, "csrf_token", None) and form.csrf_token.errors)


def _refuse_csrf() -> tuple[str, int]:
    return render_template("console/error.html", title="Form expired", message=CSRF_REFUSED), 400


def _load(schema: Schema, data: dict[str, Any], form: FlaskForm) -> dict[str, Any] | None:
    """The API's schema decides; its messages go next to the form's fields. NUL characters are
    refused first, as web/hardening.py refuses them in JSON bodies (Postgres text cannot hold them)."""
    try:
        unstorable = {k: [NUL_REFUSED] for k, v in data.items() if isinstance(v, str) and "\x00" in v}
        if unstorable:
            raise ValidationError(unstorable)
        return dict(schema.load(data))
    except ValidationError as error:
        messages = error.messages if isinstance(error.messages, dict) else {"_schema": error.messages}
        for name, problems in messages.items():
            field = getattr(form, str(name), None)
            text = problems if isinstance(problems, list) else [str(problems)]
            if field is not None:
                field.errors = [*field.errors, *map(str, text)]
            else:
                flash(f"{name}: {' '.join(map(str, text))}", "error")
        return None


def _back(default: str) -> Response:
    return redirect(default)


def _uuid_or_404(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        abort(404)


def _get_or_404(session: Session, model: type[_Row], row_id: str) -> _Row:
    """The row of ``model`` whose id is ``row_id`` (from the URL); 404 if it is no id or no row."""
    row = session.get(model, _uuid_or_404(row_id))
    if row is None:
        abort(404)
    return row


# ---- login -----------------------------------------------------------------------------------


@bp.get("/login")
def login_page() -> str:
    return render_template("console/login.html", form=LoginForm())


# The POSTs are endpoints of their own: web/limits.py counts them (only) against the API login's budgets.
@bp.post("/login")
@raw_body  # a form, not JSON (web/hardening.py refuses other bodies elsewhere)
def login() -> Any:
    form = LoginForm()
    if _csrf_refused(form):
        return _refuse_csrf()
    body = _load(LoginIn(), {"email": form.email.data or "", "password": form.password.data or ""}, form)
    if body is None:
        return render_template("console/login.html", form=form), 422
    with transaction() as session:
        result = logins.authenticate(
            session,
            email=body["email"],
            password=body["password"],
            device_id=None,
            client_address=client_address(),
            policy=policies().logins,
            now=database_now(session),
            request_id=request_id(),
        )
    # After commit: the failure counter and the audit row stay, as for the API's login.
    if result.locked_for is not None:
        return _login_refused(form, _locked(result.locked_for), 429)
    if result.user is None:
        return _login_refused(form, "Invalid email or password.", 401)
    if result.user.role != Role.ADMIN:
        return _login_refused(form, ADMINS_ONLY, 403)
    if result.otp_required:
        # The second step, as the API's: a code to the admin, answered on the next form.
        cookie_session[OTP_CHALLENGE] = _send_challenge(result.user)
        return redirect(url_for("console.login_otp_page", next=request.args.get("next", "")))
    return _signed_in(result.user)


def _signed_in(user: User) -> Response:
    sign_in(user)
    target = request.args.get("next", "")
    safe = target.startswith("/console/") and not target.startswith("/console//")
    return redirect(target if safe else url_for("console.overview"))


def _send_challenge(user: User) -> str:
    """A code for ``user`` by the configured notifier (web/auth.py's login sends the same)."""
    challenge, code = otp.issue(
        resources().redis, policies().otp, challenge_id=otp.new_challenge_id(), user_id=user.id, device_id=None
    )
    make_notifier(settings().notifier).send_otp(
        OtpMessage(user_id=user.id, email=user.email, purpose=challenge.purpose, code=code, challenge_id=challenge.id)
    )
    return challenge.id


@bp.get("/login/otp")
def login_otp_page() -> Any:
    if not isinstance(cookie_session.get(OTP_CHALLENGE), str):
        return redirect(url_for("console.login_page"))
    return render_template("console/otp.html", form=OtpForm())


@bp.post("/login/otp")
@raw_body
def login_otp() -> Any:
    form = OtpForm()
    challenge_id = cookie_session.get(OTP_CHALLENGE)
    if not isinstance(challenge_id, str):
        return redirect(url_for("console.login_page"))
    if _csrf_refused(form):
        return _refuse_csrf()
    body = _load(OtpVerifyIn(), {"challenge_id": challenge_id, "code": form.code.data or ""}, form)
    if body is None:
        return render_template("console/otp.html", form=form), 422
    with transaction() as db:
        result = logins.answer_otp(
            db,
            resources().redis,
            policies().otp,
            challenge_id=challenge_id,
            code=body["code"],
            trust_device=False,
            client_address=client_address(),
            policy=policies().logins,
            now=database_now(db),
            request_id=request_id(),
        )
    # After commit: a wrong code counts toward the lockout, as the API's does.
    if result.locked_for is not None:
        cookie_session.pop(OTP_CHALLENGE, None)
        return _login_refused(LoginForm(formdata=None), _locked(result.locked_for), 429)
    if result.user is None:
        return render_template("console/otp.html", form=form, error="The code is wrong, or it has expired."), 401
    cookie_session.pop(OTP_CHALLENGE, None)
    if result.user.role != Role.ADMIN:
        return _login_refused(LoginForm(formdata=None), ADMINS_ONLY, 403)
    return _signed_in(result.user)


def _locked(seconds: int) -> str:
    return f"Too many failed logins; try again in {seconds} seconds."


def _login_refused(form: LoginForm, message: str, status: int) -> tuple[str, int]:
    return render_template("console/login.html", form=form, error=message), status


@bp.post("/logout")
@raw_body
def logout() -> Any:
    form = ActionForm()
    if _csrf_refused(form):
        return _refuse_csrf()
    sign_out()
    return redirect(url_for("console.login_page"))


# ---- overview --------------------------------------------------------------------------------


@bp.get("/")
@admin_required
def overview() -> str:
    with transaction() as session:
        numbers = health.measure(session, database_now(session), settings().sweeper_max_requeues)
    return render_template("console/overview.html", health=numbers)


# ---- KYC -------------------------------------------------------------------------------------


@bp.get("/kyc")
@admin_required
def kyc_queue() -> str:
    with transaction() as session:
        page = users.list_users(
            session, kyc_status=KycStatus.PENDING, cursor=request.args.get("cursor"), limit=PAGE_SIZE
        )
    return render_template("console/kyc.html", page=page, form=KycForm())


@bp.post("/users/<user_id>/kyc")
@admin_required
@raw_body
def decide_kyc(user_id: str) -> Any:
    uid = _uuid_or_404(user_id)
    form = KycForm()
    if _csrf_refused(form):
        return _refuse_csrf()
    body = _load(KycDecisionIn(), {"decision": form.decision.data or "", "reason": form.reason.data or None}, form)
    if body is None:
        for field in (form.decision, form.reason):
            for message in field.errors:
                flash(f"{field.name}: {message}", "error")
        return _back(url_for("console.kyc_queue"))
    approve = body["decision"].value == "APPROVE"
    try:
        with transaction() as session:
            user = kyc.decide_kyc(
                session,
                user_id=uid,
                approve=approve,
                admin_id=current_admin().id,
                reason=body.get("reason"),
                request_id=request_id(),
            )
            email = user.email
    except DomainError as error:
        flash(str(error.detail or error.code), "error")
        return _back(url_for("console.kyc_queue"))
    flash(f"KYC {'approved' if approve else 'rejected'} for {email}.", "ok")
    return _back(url_for("console.kyc_queue"))


# ---- search ----------------------------------------------------------------------------------


@bp.get("/search")
@admin_required
def search() -> Any:
    q = (request.args.get("q") or "").strip()
    status = request.args.get("status") or None
    results: dict[str, list[Any]] = {"users": [], "accounts": [], "transfers": []}
    next_cursor = None
    metadata = _metadata_filter()
    with transaction() as session:
        as_id = _maybe_uuid(q)
        if metadata and (not q or as_id is not None):
            # Transfers by metadata (the API's ?metadata[KEY]=VALUE), of one account when an id is given.
            results["transfers"], next_cursor = _transfers(session, status, as_id, metadata)
        elif as_id is not None:
            results["users"] = [u for u in [session.get(User, as_id)] if u]
            results["accounts"] = [a for a in [session.get(Account, as_id)] if a]
            results["transfers"] = [t for t in [session.get(Transfer, as_id)] if t]
            if not results["transfers"] and results["accounts"]:
                results["transfers"], next_cursor = _transfers(session, status, as_id)
        elif "@" in q:
            pattern = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            by_email = select(User).where(User.email.like(pattern, escape="\\"))
            page = paginate(session, by_email, newest_first(User), request.args.get("cursor"), PAGE_SIZE)
            results["users"], next_cursor = page.items, page.next_cursor
        elif q:
            stmt = select(Transfer).where(Transfer.reference == q)
            if status:
                stmt = stmt.where(Transfer.status == _status(status))
            results["transfers"] = list(session.scalars(stmt.order_by(Transfer.created_at.desc()).limit(PAGE_SIZE)))
        elif status:
            results["transfers"], next_cursor = _transfers(session, status, None)
    statuses = [s.value for s in TransferStatus]
    return render_template(
        "console/search.html",
        q=q,
        status=status,
        statuses=statuses,
        results=results,
        next_cursor=next_cursor,
        meta_key=request.args.get("meta_key", ""),
        meta_value=request.args.get("meta_value", ""),
    )


def _transfers(
    session: Session, status: str | None, account_id: uuid.UUID | None, metadata: dict[str, str] | None = None
) -> tuple[list[Transfer], str | None]:
    """A page of transfers as the API's GET /transfers lists them for the admin, from ?cursor."""
    page = queries.list_visible(
        session,
        current_admin(),
        status=_status(status),
        account_id=account_id,
        cursor=request.args.get("cursor"),
        limit=PAGE_SIZE,
        metadata=metadata,
    )
    return page.items, page.next_cursor


def _metadata_filter() -> dict[str, str] | None:
    """One KEY=VALUE pair to look for, checked by core.metadata (the API's rules); None: none or invalid."""
    key = request.args.get("meta_key") or ""
    if not key:
        return None
    try:
        return metadata_rules.validate_metadata({key: request.args.get("meta_value") or ""})
    except DomainError as error:
        flash(f"Metadata: {error.extra.get('errors') or error.detail}", "error")
        return None


def _maybe_uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def _status(value: str | None) -> TransferStatus | None:
    if not value:
        return None
    try:
        return TransferStatus(value)
    except ValueError:
        abort(400)


# ---- users and accounts ----------------------------------------------------------------------


@bp.get("/users/<user_id>")
@admin_required
def user_page(user_id: str) -> str:
    with transaction() as session:
        user = _get_or_404(session, User, user_id)
        owned = list(session.scalars(select(Account).where(Account.user_id == user.id).order_by(Account.created_at)))
        return render_template("console/user.html", user=user, accounts=owned, form=KycForm())


@bp.get("/accounts/<account_id>")
@admin_required
def account_page(account_id: str, limits_form: LimitsForm | None = None, status: int = 200) -> Any:
    with transaction() as session:
        account = _get_or_404(session, Account, account_id)
        limits = limit_settings.view(session, account)
        now = database_now(session).astimezone(UTC)
        entries = queries.list_entries(session, account, cursor=request.args.get("cursor"), limit=PAGE_SIZE)
        history = audit.search(session, entity_id=str(account.id), action=None, cursor=None, limit=20)
        if limits_form is None:
            limits_form = LimitsForm(
                formdata=None,
                per_transfer=_text(limits.bank_caps.per_transfer),
                daily_outgoing=_text(limits.bank_caps.daily_outgoing),
                monthly_outgoing=_text(limits.bank_caps.monthly_outgoing),
                credit_limit=_text(account.credit_limit),
            )
        page = render_template(
            "console/account.html",
            account=account,
            owner=account.user,
            limits=limits,
            entries=entries,
            freeze_form=ReasonForm(),
            limits_form=limits_form,
            history=history.items,
            statement_from=f"{now:%Y-%m}-01T00:00:00Z",  # this month so far
            statement_to=f"{now + timedelta(seconds=1):%Y-%m-%dT%H:%M:%SZ}",
        )
    return page, status


@bp.get("/accounts/<account_id>/statement")
@admin_required
def statement_csv(account_id: str) -> Any:
    """The API's CSV statement (core.statements: one snapshot cuts the period, then streamed)."""
    aid = _uuid_or_404(account_id)
    try:
        args = StatementArgs().load({k: v for k, v in request.args.items() if k in ("from", "to")})
    except ValidationError as error:
        flash(f"Statement period: {error.messages}", "error")
        return _back(url_for("console.account_page", account_id=aid))
    try:
        with snapshot() as db:
            account = statements.visible_account(db, aid, current_admin())
            period = statements.frozen(db, statements.period(db, account, args["from_"], args["to"]))
    except DomainError as error:
        flash(str(error.detail or error.code), "error")
        return _back(url_for("console.account_page", account_id=aid))
    stamp = f"{period.start:%Y%m%dT%H%M%SZ}-{period.end:%Y%m%dT%H%M%SZ}"
    return Response(
        statements.csv_chunks(statements.stream(resources().sessions, period)),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="statement-{period.account_id}-{stamp}.csv"'},
    )


def _text(value: int | None) -> str:
    return "" if value is None else str(value)


def _freeze(account_id: str, frozen: bool) -> Any:
    aid = _uuid_or_404(account_id)
    form = ReasonForm()
    if _csrf_refused(form):
        return _refuse_csrf()
    body = _load(ReasonIn(), {"reason": form.reason.data or ""}, form)
    if body is None:
        flash("A reason is required (1 to 500 characters).", "error")
        return _back(url_for("console.account_page", account_id=aid))
    try:
        with transaction() as session:
            accounts.set_frozen(
                session, aid, frozen=frozen, admin_id=current_admin().id, reason=body["reason"], request_id=request_id()
            )
    except DomainError as error:
        flash(str(error.detail or error.code), "error")
    else:
        flash("Account frozen." if frozen else "Account unfrozen.", "ok")
    return _back(url_for("console.account_page", account_id=aid))


@bp.post("/accounts/<account_id>/freeze")
@admin_required
@raw_body
def freeze(account_id: str) -> Any:
    return _freeze(account_id, True)


@bp.post("/accounts/<account_id>/unfreeze")
@admin_required
@raw_body
def unfreeze(account_id: str) -> Any:
    return _freeze(account_id, False)


@bp.post("/accounts/<account_id>/limits")
@admin_required
@raw_body
def set_limits(account_id: str) -> Any:
    aid = _uuid_or_404(account_id)
    form = LimitsForm()
    if _csrf_refused(form):
        return _refuse_csrf()
    data: dict[str, Any] = {"reason": form.reason.data or ""}
    for name in (*LIMIT_NAMES, CREDIT_LIMIT):
        raw = (getattr(form, name).data or "").strip()
        data[name] = None if raw == "" else int(raw) if raw.lstrip("-").isdigit() else raw
    body = _load(BankLimitsIn(), data, form)
    if body is None:
        return account_page(account_id, limits_form=form, status=422)
    reason = body.pop("reason")
    try:
        with transaction() as session:
            limit_settings.set_bank_limits(
                session, aid, body, admin_id=current_admin().id, reason=reason, request_id=request_id()
            )
    except DomainError as error:
        flash(str(error.detail or error.code), "error")
    else:
        flash("Limits set.", "ok")
    return _back(url_for("console.account_page", account_id=aid))


# ---- transfers -------------------------------------------------------------------------------


@bp.get("/transfers/<transfer_id>")
@admin_required
def transfer_page(transfer_id: str) -> str:
    with transaction() as session:
        transfer = _get_or_404(session, Transfer, transfer_id)
        source = session.get(Account, transfer.source_account_id)
        destination = session.get(Account, transfer.destination_account_id)
        entries = list(
            session.scalars(select(LedgerEntry).where(LedgerEntry.transfer_id == transfer.id).order_by(LedgerEntry.seq))
        )
        trail = proofs.transfer_audit(session, transfer.id)
        checks = [_check(session, item) for item in trail.items]
        return render_template(
            "console/transfer.html",
            transfer=transfer,
            source=source,
            destination=destination,
            entries=entries,
            items=list(zip(trail.items, checks, strict=True)),
            latest=trail.root,
        )


def _check(session: Any, item: proofs.AuditItem) -> dict[str, Any]:
    """The check a client runs (examples/verify_audit.py), done here too: the record's hash (leaf
    version 2) and the proof from it to its batch's published root. The browser repeats the
    proof walk itself (static/proof.js) from the values on the page."""
    if item.seq is None or item.row_hash is None or item.proof is None or item.sealed_batch is None:
        return {"sealed": False}
    root = get_root(session, item.sealed_batch)
    content_ok = None
    if root.leaf_version >= 2:
        record = {"seq": item.seq, "action": item.action, "occurred_at": item.occurred_at, "details": item.details}
        content_ok = leaf.row_hash(record) == item.row_hash
    proof = [{"side": step.side, "sibling": step.sibling} for step in item.proof]
    return {
        "sealed": True,
        "root": root.root,
        "proof_ok": verify_proof(item.row_hash, item.proof, root.root),
        "content_ok": content_ok,
        "proof": proof,
    }


# ---- webhooks --------------------------------------------------------------------------------


@bp.get("/webhooks")
@admin_required
def webhooks_page() -> str:
    with transaction() as session:
        numbers = health.failing_endpoints(session, database_now(session))
        endpoints = paginate(
            session, select(WebhookEndpoint), newest_first(WebhookEndpoint), request.args.get("cursor"), PAGE_SIZE
        )
        return render_template("console/webhooks.html", endpoints=endpoints, failing=numbers)


@bp.get("/webhooks/<endpoint_id>")
@admin_required
def endpoint_page(endpoint_id: str) -> str:
    with transaction() as session:
        endpoint = _get_or_404(session, WebhookEndpoint, endpoint_id)
        stmt = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id)
        deliveries = paginate(session, stmt, newest_first(WebhookDelivery), request.args.get("cursor"), PAGE_SIZE)
        return render_template("console/endpoint.html", endpoint=endpoint, deliveries=deliveries, form=ActionForm())


@bp.post("/deliveries/<delivery_id>/retry")
@admin_required
@raw_body
def retry_delivery(delivery_id: str) -> Any:
    did = _uuid_or_404(delivery_id)
    form = ActionForm()
    if _csrf_refused(form):
        return _refuse_csrf()
    endpoint_id = None
    try:
        with transaction() as session:
            delivery = session.get(WebhookDelivery, did)
            endpoint = session.get(WebhookEndpoint, delivery.endpoint_id) if delivery else None
            if delivery is None or endpoint is None:
                abort(404)
            endpoint_id = endpoint.id
            owner = session.get(User, endpoint.user_id)
            assert owner is not None  # a foreign key
            # The service checks the endpoint's owner; the admin asks on the owner's behalf, and
            # the audit says who did (a row of the admin's own next to the service's).
            retried = webhooks.retry_delivery(
                session, owner, did, policy=policies().webhooks, now=database_now(session), request_id=request_id()
            )
            audit.record(
                session,
                action="console.webhook_retry",
                entity_type="webhook_delivery",
                entity_id=did,
                actor_id=current_admin().id,
                request_id=request_id(),
                details={"queued": retried.queued, "endpoint_id": str(endpoint.id)},
            )
            if retried.queued:
                publish_after_commit(session, enqueue_delivery, retried.delivery.id)
    except DomainError as error:
        flash(str(error.detail or error.code), "error")
    else:
        flash("Delivery queued for another attempt." if retried.queued else "An attempt is already queued.", "ok")
    return _back(url_for("console.endpoint_page", endpoint_id=endpoint_id))
