"""Endpoint secrets: Standard Webhooks format, encrypted at rest, one signature per valid secret."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from core.config import Settings
from core.resources import Policies, webhook_policy
from core.webhooks.delivery import signing_secrets
from core.webhooks.secrets import SecretBox, generate_secret, sign


def test_secret_format() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) >= 24
    assert generate_secret() != secret


def test_secrets_are_encrypted_and_need_the_same_key() -> None:
    secret = generate_secret()
    token = SecretBox("k" * 40).encrypt(secret)
    assert secret not in token and secret.removeprefix("whsec_") not in token
    assert SecretBox("k" * 40).decrypt(token) == secret
    with pytest.raises(ValueError, match="WEBHOOK_SECRETS_KEY"):
        SecretBox("other" * 10).decrypt(token)
    assert "k" * 40 not in repr(SecretBox("k" * 40))


def test_two_secrets_give_two_signatures_each_verifiable() -> None:
    old, new = generate_secret(), generate_secret()
    now = datetime.now(UTC)
    body = '{"type":"transfer.completed"}'
    header = sign([new, old], "evt_1", now, body)
    assert len(header.split(" ")) == 2 and all(s.startswith("v1,") for s in header.split(" "))
    headers = {"webhook-id": "evt_1", "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": header}
    for secret in (new, old):
        assert Webhook(secret).verify(body, headers) == {"type": "transfer.completed"}
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(body, headers)


def test_the_old_secret_signs_only_during_its_grace_period() -> None:
    policy = webhook_policy(Settings(webhook_secrets_key="x" * 40))
    old, new = generate_secret(), generate_secret()
    now = datetime.now(UTC)
    endpoint = SimpleNamespace(
        secret_encrypted=policy.box.encrypt(new),
        previous_secret_encrypted=policy.box.encrypt(old),
        previous_secret_expires_at=now + timedelta(hours=24),
    )
    assert signing_secrets(endpoint, policy, now) == [new, old]  # type: ignore[arg-type]
    assert signing_secrets(endpoint, policy, now + timedelta(hours=25)) == [new]  # type: ignore[arg-type]


def test_a_previous_key_still_decrypts_and_rotate_moves_a_secret_to_the_current_key() -> None:
    old_key, new_key = "old-" + "k" * 40, "new-" + "k" * 40
    secret = generate_secret()
    token = SecretBox(old_key).encrypt(secret)
    with pytest.raises(ValueError, match="WEBHOOK_SECRETS_PREVIOUS_KEYS"):
        SecretBox(new_key).decrypt(token)
    rotating = SecretBox(new_key, [old_key])
    assert rotating.decrypt(token) == secret
    assert SecretBox(new_key).decrypt(rotating.encrypt(secret)) == secret  # the current key encrypts
    rotated = rotating.rotate(token)
    assert SecretBox(new_key).decrypt(rotated) == secret  # the old key can now be dropped
    with pytest.raises(ValueError, match="any configured key"):
        SecretBox(new_key).rotate(SecretBox("other-" + "k" * 40).encrypt(secret))


def test_the_policy_reads_the_previous_keys_from_settings() -> None:
    old_key = "old-" + "k" * 40
    token = SecretBox(old_key).encrypt("whsec_x")
    settings = Settings(webhook_secrets_key="new-" + "k" * 40, webhook_secrets_previous_keys=f" other-key , {old_key},")
    assert [k.get_secret_value() for k in settings.webhook_secrets_previous_keys] == ["other-key", old_key]
    assert webhook_policy(settings).box.decrypt(token) == "whsec_x"
    policies = Policies.from_settings(settings)
    assert policies.webhooks.box.decrypt(token) == "whsec_x"  # what Resources.open builds, once
