"""/webhooks: partner endpoints (secret shown once), their deliveries, manual retries."""

from __future__ import annotations

import uuid
from typing import Any

import marshmallow as ma
from flask_jwt_extended import jwt_required
from flask_smorest import Blueprint
from marshmallow import fields, validate

from core import events_feed
from core.after_commit import publish_after_commit
from core.db import database_now
from core.events import EVENT_TYPES, EventType
from core.pagination import Page
from core.webhooks import replay, service
from core.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from core.webhooks.policy import WebhookPolicy
from core.webhooks.urls import MAX_URL_LENGTH
from web.context import policies, request_id, transaction
from web.docs import BEARER
from web.schemas import FullMatch, PageArgs, Rfc3339Instant, Strict, by_value, page_of
from web.security import current_user
from worker.webhooks import enqueue_delivery

URL_SHAPE = r"^https?://[^/?#@\s]+([/?][^#\s]*)?$"

blp = Blueprint("webhooks", __name__, url_prefix="/webhooks", description="Partner webhooks")


# ---- schemas -----------------------------------------------------------------------------


class EndpointIn(Strict):
    # The shape core.webhooks.urls accepts (http or https, a host, no credentials, no fragment),
    # published in the OpenAPI schema; the service checks the rest (https in production, addresses).
    url = fields.String(
        required=True,
        validate=[
            validate.Length(min=1, max=MAX_URL_LENGTH),
            FullMatch(URL_SHAPE, error="Must be an http(s) URL with a host, no credentials and no fragment."),
        ],
        metadata={"format": "uri"},
    )
    events = fields.List(
        fields.String(validate=validate.OneOf(EVENT_TYPES)),
        required=True,
        validate=validate.Length(min=1, max=len(EVENT_TYPES) * 2),
    )
    description = fields.String(validate=validate.Length(max=500), allow_none=True)


class EndpointOut(ma.Schema):
    id = fields.UUID()
    url = fields.String()
    events = fields.List(fields.String())
    description = fields.String(allow_none=True)
    enabled = fields.Boolean()
    created_at = fields.DateTime()


class EndpointCreatedOut(EndpointOut):
    secret = fields.String(metadata={"description": "whsec_…: shown only in this response"})


class SecretOut(ma.Schema):
    secret = fields.String(metadata={"description": "The new secret; the old one also signs for the grace period"})


class DeliveryOut(ma.Schema):
    id = fields.UUID()
    event_id = fields.UUID()
    event_type = by_value(EventType)
    attempt = fields.Integer()
    status = by_value(DeliveryStatus)
    response_status = fields.Integer(allow_none=True)
    next_attempt_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()


class ReplayIn(Strict):
    from_ = Rfc3339Instant(required=True, data_key="from", metadata={"description": "Start of the range (inclusive)"})
    to = Rfc3339Instant(required=True, metadata={"description": "End of the range (exclusive)"})
    types = fields.List(
        fields.String(validate=validate.OneOf(EVENT_TYPES)),
        validate=validate.Length(min=1, max=len(EVENT_TYPES)),
        metadata={"description": "Default: the endpoint's event types"},
    )


class ReplayOut(ma.Schema):
    events = fields.Integer(metadata={"description": "Events of the range delivered again, with their original ids"})


EndpointList = ma.Schema.from_dict({"items": fields.List(fields.Nested(EndpointOut))}, name="WebhookEndpointList")
DeliveryPage = page_of(DeliveryOut, "WebhookDeliveryPage")


def _policy() -> WebhookPolicy:
    return policies().webhooks  # built once with the app's resources


# ---- views -------------------------------------------------------------------------------


@blp.route("/endpoints", methods=["POST"])
@jwt_required()
@blp.arguments(EndpointIn)
@blp.response(201, EndpointCreatedOut)
@blp.doc(**BEARER)
def create_endpoint(body: dict[str, Any]) -> dict[str, Any]:
    with transaction() as session:
        created = service.create_endpoint(
            session,
            current_user(),
            url=body["url"],
            events=body["events"],
            description=body.get("description"),
            policy=_policy(),
            request_id=request_id(),
        )
    e = created.endpoint
    return {
        "id": e.id,
        "url": e.url,
        "events": e.events,
        "description": e.description,
        "enabled": e.enabled,
        "created_at": e.created_at,
        "secret": created.secret,
    }


@blp.route("/endpoints", methods=["GET"])
@jwt_required()
@blp.response(200, EndpointList)
@blp.doc(**BEARER)
def list_endpoints() -> dict[str, Any]:
    with transaction() as session:
        return {"items": list(service.list_endpoints(session, current_user()))}


@blp.route("/endpoints/<uuid:endpoint_id>", methods=["GET"])
@jwt_required()
@blp.response(200, EndpointOut)
@blp.doc(**BEARER)
def get_endpoint(endpoint_id: uuid.UUID) -> WebhookEndpoint:
    with transaction() as session:
        return service.get_endpoint(session, current_user(), endpoint_id)


@blp.route("/endpoints/<uuid:endpoint_id>", methods=["DELETE"])
@jwt_required()
@blp.response(204)
@blp.doc(**BEARER)
def delete_endpoint(endpoint_id: uuid.UUID) -> None:
    with transaction() as session:
        service.delete_endpoint(session, current_user(), endpoint_id, request_id())


@blp.route("/endpoints/<uuid:endpoint_id>/rotate-secret", methods=["POST"])
@jwt_required()
@blp.response(200, SecretOut)
@blp.doc(**BEARER)
def rotate_secret(endpoint_id: uuid.UUID) -> dict[str, str]:
    with transaction() as session:
        secret = service.rotate_secret(
            session, current_user(), endpoint_id, policy=_policy(), now=database_now(session), request_id=request_id()
        )
    return {"secret": secret}


@blp.route("/endpoints/<uuid:endpoint_id>/deliveries", methods=["GET"])
@jwt_required()
@blp.arguments(PageArgs, location="query")
@blp.response(200, DeliveryPage)
@blp.doc(**BEARER)
def list_deliveries(args: dict[str, Any], endpoint_id: uuid.UUID) -> Page[WebhookDelivery]:
    with transaction() as session:
        return service.list_deliveries(
            session, current_user(), endpoint_id, cursor=args.get("cursor"), limit=args["limit"]
        )


@blp.route("/deliveries/<uuid:delivery_id>/retry", methods=["POST"])
@jwt_required()
@blp.response(202, DeliveryOut)
@blp.doc(**BEARER)
def retry_delivery(delivery_id: uuid.UUID) -> WebhookDelivery:
    with transaction() as session:
        retried = service.retry_delivery(
            session, current_user(), delivery_id, policy=_policy(), now=database_now(session), request_id=request_id()
        )
        if retried.queued:
            publish_after_commit(session, enqueue_delivery, retried.delivery.id)
    return retried.delivery


@blp.route("/endpoints/<uuid:endpoint_id>/replay", methods=["POST"])
@jwt_required()
@blp.arguments(ReplayIn)
@blp.response(202, ReplayOut)
@blp.doc(
    description=f"Delivers the endpoint's events of `[from, to)` (their `created_at`) again, with their original ids:"
    f" at most {replay.MAX_EVENTS} events and {events_feed.RETENTION.days} days back (`422` beyond). Audited.",
    **BEARER,
)
def replay_events(body: dict[str, Any], endpoint_id: uuid.UUID) -> replay.Replayed:
    types = {EventType(t) for t in body["types"]} if "types" in body else None
    with transaction() as session:
        return replay.replay(
            session,
            current_user(),
            endpoint_id,
            start=body["from_"],
            end=body["to"],
            types=types,
            now=database_now(session),
            request_id=request_id(),
        )
