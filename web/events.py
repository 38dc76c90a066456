"""/events: the events feed, cursor-paged in commit order (core/events_feed.py)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask_jwt_extended import jwt_required
from flask_smorest import Blueprint
from marshmallow import fields, validate

from core import events_feed
from core.events import EVENT_TYPES, EventType
from web.context import transaction
from web.docs import BEARER
from web.security import current_user

blp = Blueprint("events", __name__, url_prefix="/events", description="The events feed")


def _known_types(value: str) -> None:
    unknown = sorted({t for t in value.split(",") if t not in EVENT_TYPES})
    if unknown:
        raise ma.ValidationError(f"Unknown event types: {', '.join(unknown)}.")


class EventListArgs(ma.Schema):
    after = fields.String(
        validate=validate.Length(min=1, max=512),
        metadata={"description": "The next_cursor of the previous page; none: from the oldest kept event"},
    )
    types = fields.String(
        validate=[validate.Length(min=1, max=1000), _known_types],
        metadata={"description": "A comma list of event types: " + ", ".join(EVENT_TYPES)},
    )
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=events_feed.MAX_LIMIT))


class EventOut(ma.Schema):
    id = fields.UUID(metadata={"description": "The webhook-id its webhook deliveries carry"})
    sequence = fields.Integer(metadata={"description": "The feed position: strictly increasing in the order listed"})
    type = fields.String(validate=validate.OneOf(EVENT_TYPES))
    created_at = fields.DateTime()
    data = fields.Dict(metadata={"description": "The object the event's webhook carries"})


EventPage = ma.Schema.from_dict(
    {"items": fields.List(fields.Nested(EventOut)), "next_cursor": fields.String()}, name="EventPage"
)


@blp.route("", methods=["GET"])
@jwt_required()
@blp.arguments(EventListArgs, location="query")
@blp.response(200, EventPage)
@blp.doc(**BEARER)
def list_events(args: dict[str, Any]) -> events_feed.FeedPage:
    types = {EventType(t) for t in args["types"].split(",")} if "types" in args else set()
    with transaction() as session:
        return events_feed.list_events(
            session, current_user(), after=args.get("after"), types=types, limit=args["limit"]
        )
