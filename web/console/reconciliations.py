"""The console's Reconciliation pages: the imported statements, each one's lines, and the resolve
form for a break. Resolving calls core/reconciliation/resolve.py, as POST
/admin/reconciliations/{id}/lines/{line}/resolve does, with the API's schema (ResolveIn)."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import StringField

from core.errors import DomainError
from core.pagination import newest_first, paginate
from core.reconciliation import resolve as resolutions
from core.reconciliation.models import ReconciliationImport, ReconciliationLine
from web.console.auth import admin_required, current_admin
from web.console.blueprint import bp
from web.console.views import PAGE_SIZE, _csrf_refused, _load, _refuse_csrf, _uuid_or_404
from web.context import request_id, transaction
from web.hardening import raw_body
from web.reconciliations import ResolveIn


class ResolveForm(FlaskForm):  # type: ignore[misc]  # flask_wtf ships no type hints
    # Radio buttons on the page (credit, ignore); ResolveIn checks the value.
    action = StringField("Resolution")
    account_id = StringField("Account id (to credit)")
    reason = StringField("Reason (to ignore)")


@bp.get("/reconciliations")
@admin_required
def reconciliations_page() -> str:
    with transaction() as session:
        page = paginate(
            session,
            select(ReconciliationImport),
            newest_first(ReconciliationImport),
            request.args.get("cursor"),
            PAGE_SIZE,
        )
        return render_template("console/reconciliations.html", imports=page)


@bp.get("/reconciliations/<import_id>")
@admin_required
def reconciliation_page(import_id: str, form: ResolveForm | None = None, failed_line: int | None = None) -> Any:
    iid = _uuid_or_404(import_id)
    after = request.args.get("after", "0")
    after_line = int(after) if after.isdigit() else 0
    with transaction() as session:
        record = session.get(ReconciliationImport, iid)
        if record is None:
            abort(404)
        lines = list(
            session.scalars(
                select(ReconciliationLine)
                .where(ReconciliationLine.import_id == iid, ReconciliationLine.line > after_line)
                .order_by(ReconciliationLine.line)
                .limit(PAGE_SIZE + 1)
            )
        )
        more = len(lines) > PAGE_SIZE
        lines = lines[:PAGE_SIZE]
        page = render_template(
            "console/reconciliation.html",
            record=record,
            lines=lines,
            next_after=lines[-1].line if more else None,
            failed_line=failed_line,
            failed_form=form,
        )
        return (page, 422) if form is not None else page


@bp.post("/reconciliations/<import_id>/lines/<int:line>/resolve")
@admin_required
@raw_body
def resolve_line(import_id: str, line: int) -> Any:
    iid = _uuid_or_404(import_id)
    form = ResolveForm()
    if _csrf_refused(form):
        return _refuse_csrf()
    data: dict[str, Any] = {"action": form.action.data or ""}
    for name in ("account_id", "reason"):
        value = (getattr(form, name).data or "").strip()
        if value:
            data[name] = value
    body = _load(ResolveIn(), data, form)
    if body is None:
        return reconciliation_page(import_id, form=form, failed_line=line)
    try:
        with transaction() as session:
            resolutions.resolve(
                session,
                iid,
                line,
                action=body["action"],
                account_id=body.get("account_id"),
                reason=body.get("reason"),
                actor_id=current_admin().id,
                request_id=request_id(),
            )
    except DomainError as error:
        flash(f"Line {line}: {error.detail or error.code}", "error")
    else:
        flash(f"Line {line} resolved.", "ok")
    return redirect(url_for("console.reconciliation_page", import_id=iid))
