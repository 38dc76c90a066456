"""Flask API entry point: ``gunicorn 'web:create_app()'``, ``flask --app web <command>``."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask_smorest import Api

from core import logs
from core.config import Settings
from core.resources import Resources
from web import (
    account_metadata,
    accounts,
    admin,
    audit_proofs,
    auth,
    cli,
    console,
    events,
    hardening,
    limits,
    me,
    ops,
    payouts,
    problems,
    reconciliations,
    refunds,
    scheduled_transfers,
    security,
    statements,
    telemetry,
    transfer_batches,
    transfers,
    webhooks,
)
from web.context import init_app
from web.docs import SWAGGER_UI_ASSETS, BankApi, init_swagger_assets
from web.json_provider import OrjsonProvider
from web.openapi_spec import ContractPlugin
from worker.app import create_celery

API_PREFIX = "/api/v1"
MAX_BODY_BYTES = 64 * 1024


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings()
    logs.configure(settings.log_level)
    app = Flask(__name__)
    app.json = OrjsonProvider(app)  # responses written in C (web/json_provider.py)
    app.config.update(
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        API_TITLE="Transfer Processor API",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX=API_PREFIX,
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL=SWAGGER_UI_ASSETS,  # served locally (web/docs.py), never a CDN
        API_SPEC_OPTIONS={
            "servers": [{"url": "/"}],
            "components": {
                "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
            },
        },
    )
    init_app(app, Resources.open(settings, pool_size=5, redis_timeout=3))
    _init_celery(app, settings)
    security.init_app(app)
    hardening.init_app(app)  # before the rate limiter, whose key functions may read the body
    # JsonBodiesPlugin documents the 415; ContractPlugin completes every operation (issue 29).
    api = BankApi(app, spec_kwargs={"extra_plugins": [hardening.JsonBodiesPlugin(), ContractPlugin()]})
    for blp in (
        auth.blp,
        me.blp,
        accounts.blp,
        account_metadata.blp,
        statements.blp,
        transfers.blp,
        transfer_batches.blp,
        refunds.blp,
        scheduled_transfers.blp,
        payouts.counterparties_blp,
        payouts.payouts_blp,
        payouts.payout_files_blp,
        audit_proofs.blp,
        admin.blp,
        reconciliations.blp,
        webhooks.blp,
        events.blp,
        ops.blp,
    ):
        api.register_blueprint(blp, url_prefix=API_PREFIX + (blp.url_prefix or ""))
    limits.init_app(app)  # after the blueprints: limits attach to their views
    problems.register(app)  # after Api(): our handlers replace flask-smorest's JSON errors
    ops.add_root_aliases(app)
    _root_doc_aliases(app, api)
    init_swagger_assets(app)
    telemetry.init_app(app, app.extensions["bank"])
    cli.init_app(app)
    console.init_app(app)  # /console: server-rendered, outside the API and its OpenAPI document
    return app


def _init_celery(app: Flask, settings: Settings) -> None:
    """The Celery app the views publish with, from the same settings (Flask's ``celery_init_app``).
    The tasks are ``shared_task``s: a publish goes through the process's default app, this one."""
    celery = create_celery(settings, set_as_current=False)
    celery.set_default()
    app.extensions["celery"] = celery


def _root_doc_aliases(app: Flask, api: Api) -> None:
    @app.get("/openapi.json")
    def openapi_root() -> Any:
        return api.spec.to_dict()

    @app.get("/docs")
    def docs_root() -> Any:
        # The page itself, not a redirect (a client that does not follow redirects sees 200); its
        # asset and spec URLs are absolute.
        return app.view_functions["api-docs.openapi_swagger_ui"]()
