"""The least a ``POST /api/v1/transfers`` can be with this project's stack: a Flask view under
gunicorn that writes one row in one transaction, plus, one by one (``FLOOR_LAYERS``, comma
separated), the pieces every accept of the real system pays for on top of its own checks:

- ``jwt``: the bearer token's HS256 signature (PyJWT);
- ``limiter``: flask-limiter's moving window in Redis with its ``X-RateLimit-*`` headers, keyed
  by the token's subject (two Lua scripts a request: take an entry, read the window back);
- ``limiter1``: the same window in one round trip, as ``web/limits.py`` sets it up
  (``web/limit_window.py``);
- ``nudge``: one Redis ``SET NX EX`` after the commit (the settlement nudge's claim);
- ``pre_ping``: SQLAlchemy's pool pre-ping on every checkout.

No PIN, revocation, replay, account check, audit row or outbox event: whatever this does per
second is a ceiling for the real endpoint on the same machine. Served by ``bench/floor.py``.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any, cast

import jwt
import redis
from flask import Flask, g, jsonify, request
from flask_limiter import Limiter
from sqlalchemy import create_engine, text

SECRET = "bench-floor-secret-0123456789abcdef0123456789"  # signs the floor's own tokens only
LAYERS = frozenset(filter(None, os.environ.get("FLOOR_LAYERS", "").split(",")))
TABLE_DDL = (
    "CREATE TABLE floor_transfers (id uuid PRIMARY KEY, source uuid NOT NULL, destination uuid NOT NULL,"
    " amount bigint NOT NULL, idempotency_key text NOT NULL UNIQUE, body jsonb NOT NULL,"
    " created_at timestamptz NOT NULL DEFAULT now())"
)
_INSERT = text(
    "INSERT INTO floor_transfers (id, source, destination, amount, idempotency_key, body)"
    " VALUES (:id, :source, :destination, :amount, :key, :body)"
)

engine = create_engine(
    os.environ.get("FLOOR_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/bench_floor"),
    pool_size=5,
    pool_pre_ping="pre_ping" in LAYERS,
)
redis_url = os.environ.get("FLOOR_REDIS_URL", "redis://127.0.0.1:6379/9")
nudges = redis.Redis.from_url(redis_url)
app = Flask(__name__)


def _claims() -> dict[str, Any]:
    if "claims" not in g:
        g.claims = jwt.decode(request.headers.get("Authorization", "").removeprefix("Bearer "), SECRET, ["HS256"])
    return cast(dict[str, Any], g.claims)


def create_transfer() -> Any:
    body = request.get_json()
    if "jwt" in LAYERS:
        _claims()
    with engine.begin() as conn:
        conn.execute(
            _INSERT,
            {
                "id": uuid.uuid4(),
                "source": body["source_account_id"],
                "destination": body["destination_account_id"],
                "amount": body["amount"],
                "key": request.headers["Idempotency-Key"],
                "body": json.dumps(body),
            },
        )
    if "nudge" in LAYERS:
        nudges.set("bench:floor:nudge", "1", nx=True, ex=2)
    return jsonify(status="PENDING", **body), 202


view = create_transfer
if LAYERS & {"limiter", "limiter1"}:
    from web import limit_window

    limiter = Limiter(
        key_func=lambda: "user:" + _claims()["sub"],
        app=app,
        storage_uri=redis_url,
        strategy=limit_window.NAME if "limiter1" in LAYERS else "moving-window",
        headers_enabled=True,
    )
    view = limiter.limit("1000000 per minute")(view)
app.add_url_rule("/api/v1/transfers", "create_transfer", view, methods=["POST"])
app.add_url_rule("/healthz", "healthz", lambda: "ok")


def token(subject: str) -> str:
    return jwt.encode({"sub": subject}, SECRET, algorithm="HS256")
