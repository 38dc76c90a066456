"""/scheduled-transfers: create (PIN checked now, not stored), list, get with runs, pause/resume/cancel."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import marshmallow as ma
from flask import request, url_for
from flask_jwt_extended import jwt_required
from flask_smorest import Blueprint
from marshmallow import fields, validate

from core.pagination import Page
from core.schedules import service
from core.schedules.models import RunStatus, ScheduledTransfer, ScheduleStatus, ShortFundsPolicy
from web.context import request_id, transaction
from web.docs import BEARER, IDEMPOTENCY_KEY, doc
from web.me import pin_policy
from web.metadata_field import MetadataIn, metadata_out
from web.schemas import MovementIn, PageArgs, Rfc3339Instant, StrictInteger, by_value, page_of
from web.security import checked_current_user, current_user

blp = Blueprint("scheduled_transfers", __name__, url_prefix="/scheduled-transfers", description="Scheduled transfers")


class ScheduledTransferIn(MovementIn):
    start_at = Rfc3339Instant(required=True)
    rrule = fields.String(
        validate=validate.Length(min=1, max=500),
        allow_none=True,
        metadata={"description": "RFC 5545 recurrence, e.g. FREQ=MONTHLY;BYMONTHDAY=1; without it: once at start_at."},
    )
    until = Rfc3339Instant(allow_none=True)
    count = StrictInteger(validate=validate.Range(min=1, max=100_000), allow_none=True)
    on_insufficient_funds = by_value(ShortFundsPolicy, required=True)
    metadata = MetadataIn()


class ScheduledRunOut(ma.Schema):
    occurrence = fields.DateTime()
    transfer_id = fields.UUID(allow_none=True)
    status = by_value(RunStatus)


class ScheduledTransferOut(ma.Schema):
    id = fields.UUID()
    source_account_id = fields.UUID()
    destination_account_id = fields.UUID()
    amount = fields.Integer()
    currency = fields.String()
    reference = fields.String(allow_none=True)
    start_at = fields.DateTime()
    rrule = fields.String(allow_none=True)
    until = fields.DateTime(allow_none=True)
    count = fields.Integer(allow_none=True)
    on_insufficient_funds = by_value(ShortFundsPolicy)
    metadata = metadata_out()
    status = by_value(ScheduleStatus)
    next_run_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()


class ScheduledTransferDetailOut(ScheduledTransferOut):
    runs = fields.List(fields.Nested(ScheduledRunOut))


ScheduledTransferPage = page_of(ScheduledTransferOut, "ScheduledTransferPage")


def _location(schedule: ScheduledTransfer) -> str:
    return url_for("scheduled_transfers.get_scheduled_transfer", schedule_id=schedule.id)


@blp.route("", methods=["POST"])
@jwt_required()
@blp.arguments(ScheduledTransferIn())
@blp.response(201, ScheduledTransferOut)
@blp.alt_response(200, schema=ScheduledTransferOut, description="Idempotent replay of a created schedule")
@blp.doc(**doc(BEARER, IDEMPOTENCY_KEY))
def create_scheduled_transfer(body: dict[str, Any]) -> tuple[ScheduledTransfer, int, dict[str, str]]:
    """A transfer that runs at ``start_at`` and then by its rule; each occurrence becomes one transfer."""
    pin = body.pop("pin")
    schedule_request = service.ScheduleRequest(
        source_account_id=body["source_account_id"],
        destination_account_id=body["destination_account_id"],
        amount=body["amount"],
        currency=body["currency"],
        reference=body.get("reference"),
        start_at=body["start_at"],
        rrule=body.get("rrule"),
        until=body.get("until"),
        count=body.get("count"),
        on_insufficient_funds=body["on_insufficient_funds"],
        metadata=body.get("metadata"),
    )
    with transaction() as session:  # a wrong PIN commits its failure count
        created = service.create(
            session,
            user=checked_current_user(),
            idempotency_key=request.headers.get("Idempotency-Key"),
            request=schedule_request,
            pin=pin,
            pin_policy=pin_policy(),
            request_id=request_id(),
        )
    created.pin.raise_if_failed()
    assert created.schedule is not None
    headers = {"Location": _location(created.schedule)}
    if not created.created:
        return created.schedule, 200, {**headers, "Idempotent-Replayed": "true"}
    return created.schedule, 201, headers


@blp.route("", methods=["GET"])
@jwt_required()
@blp.arguments(PageArgs, location="query")
@blp.response(200, ScheduledTransferPage)
@blp.doc(**BEARER)
def list_scheduled_transfers(args: dict[str, Any]) -> Page[ScheduledTransfer]:
    """The caller's schedules, newest first (an admin: every schedule)."""
    with transaction() as session:
        return service.list_visible(session, current_user(), cursor=args.get("cursor"), limit=args["limit"])


@blp.route("/<uuid:schedule_id>", methods=["GET"])
@jwt_required()
@blp.response(200, ScheduledTransferDetailOut)
@blp.doc(**BEARER)
def get_scheduled_transfer(schedule_id: uuid.UUID) -> SimpleNamespace:
    """The schedule with its runs, oldest occurrence first."""
    with transaction() as session:
        schedule = service.get_visible(session, schedule_id, current_user())
        return _with_runs(session, schedule)


def _with_runs(session: Any, schedule: ScheduledTransfer) -> SimpleNamespace:
    # An object, not a dict: metadata_out reads the schedule's ``metadata_``.
    data = {c: getattr(schedule, c) for c in ScheduledTransferOut().fields if c != "metadata"}
    return SimpleNamespace(**data, metadata_=schedule.metadata_, runs=service.runs_of(session, schedule.id))


def _steer(action: str) -> Any:
    steer = getattr(service, action)

    @jwt_required()
    @blp.response(200, ScheduledTransferOut)
    @blp.doc(**BEARER)
    def view(schedule_id: uuid.UUID) -> ScheduledTransfer:
        with transaction() as session:
            return steer(session, schedule_id, current_user(), request_id())

    view.__name__ = f"{action}_scheduled_transfer"
    view.__doc__ = {
        "pause": "Pause: no occurrence runs until resumed.",
        "resume": "Resume from the next occurrence after now (a FAILED occurrence is not run again).",
        "cancel": "Cancel for good.",
    }[action]
    blp.route(f"/<uuid:schedule_id>/{action}", methods=["POST"])(view)
    return view


pause_scheduled_transfer = _steer("pause")
resume_scheduled_transfer = _steer("resume")
cancel_scheduled_transfer = _steer("cancel")
