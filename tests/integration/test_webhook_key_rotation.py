"""WEBHOOK_SECRETS_KEY rotates: stored secrets keep signing under the new key, and once
``flask --app web rotate-webhook-secrets-key`` has re-encrypted them the old key can be dropped."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from core.config import Settings
from core.models import AuditLog
from core.resources import webhook_policy
from core.webhooks import service
from core.webhooks.delivery import signing_secrets
from core.webhooks.models import WebhookEndpoint
from tests.integration.test_webhooks import NOWHERE


def rotate_all(make_app, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    result = make_app(settings).test_cli_runner().invoke(args=["rotate-webhook-secrets-key"])
    assert result.exit_code == 0, result.output
    assert "re-encrypted under the current key" in result.output


def test_secrets_survive_a_key_rotation_and_the_old_key_can_go(make_app, sessions, make_customer, settings) -> None:  # type: ignore[no-untyped-def]
    old_key = settings.webhook_secrets_key.get_secret_value()
    new_key = "new-webhook-secrets-key-" + uuid.uuid4().hex
    old = webhook_policy(settings)
    customer, now = make_customer(), datetime.now(UTC)
    with sessions.begin() as s:
        created = service.create_endpoint(
            s, customer.user, url=NOWHERE, events=["transfer.completed"], description=None, policy=old
        )
    with sessions.begin() as s:  # a rotated-out secret is stored too, and signs during its grace period
        current = service.rotate_secret(s, customer.user, created.endpoint.id, policy=old, now=now)
    expected = [current, created.secret]

    def stored() -> WebhookEndpoint:
        with sessions() as s:
            endpoint = s.get(WebhookEndpoint, created.endpoint.id)
            assert endpoint is not None
            return endpoint

    rotating = Settings(webhook_secrets_key=new_key, webhook_secrets_previous_keys=old_key)
    new_only = webhook_policy(Settings(webhook_secrets_key=new_key))
    assert signing_secrets(stored(), webhook_policy(rotating), now) == expected
    with pytest.raises(ValueError):
        signing_secrets(stored(), new_only, now)

    rotate_all(make_app, rotating)
    try:
        assert signing_secrets(stored(), new_only, now) == expected
        with pytest.raises(ValueError):
            old.box.decrypt(stored().previous_secret_encrypted or "")
        with sessions() as s:
            row = s.scalars(
                select(AuditLog).where(AuditLog.action == "webhook.secrets_key_rotated").order_by(AuditLog.id.desc())
            ).first()
        assert row is not None and row.details["endpoints"] >= 1 and row.actor_id is None
    finally:
        # The test database is shared: put every secret back under the key the other tests use.
        rotate_all(make_app, Settings(webhook_secrets_key=old_key, webhook_secrets_previous_keys=new_key))
    assert signing_secrets(stored(), old, now) == expected
