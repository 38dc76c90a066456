"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask_smorest import Blueprint
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from web.context import resources
from web.problems import problem
from web.schemas import HealthOut

blp = Blueprint("ops", __name__, description="Operations")


@blp.route("/healthz", methods=["GET"])
@blp.response(200, HealthOut)
def healthz() -> dict[str, Any]:
    return {"status": "ok"}


@blp.route("/readyz", methods=["GET"])
@blp.response(200, HealthOut)
@blp.alt_response(503, description="A dependency is unreachable (problem+json with `checks`)")
def readyz() -> Any:
    res = resources()
    checks = {}
    try:
        with res.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["postgres"] = "ok"
    except SQLAlchemyError:
        checks["postgres"] = "unreachable"
    try:
        res.redis.ping()
        checks["redis"] = "ok"
    except RedisError:
        checks["redis"] = "unreachable"
    if all(v == "ok" for v in checks.values()):
        return {"status": "ok", "checks": checks}
    return problem(503, "SERVICE_UNAVAILABLE", "a dependency is unreachable", checks=checks)


def add_root_aliases(app: Flask) -> None:
    """Probes also at the root, where orchestrators look for them."""
    app.add_url_rule("/healthz", "healthz_root", healthz)
    app.add_url_rule("/readyz", "readyz_root", readyz)
