"""Security settings, notifiers and the pure parts of the lockout and the JSON guard."""

from __future__ import annotations

import json
import logging
import stat
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from core import logs
from core.config import DEV_JWT_SECRET, DEV_WEBHOOK_SECRETS_KEY, Settings
from core.identity.lockout import LoginPolicy, record_failure, record_success, seconds_locked
from core.identity.models import LoginThrottle
from core.notifications import FileNotifier, LogNotifier, OtpMessage, make_notifier
from web.hardening import json_depth


def prod(**kw: object) -> Settings:
    """Production settings with a real value for every secret that has a development default."""
    real = {name: f"{name}-{'s' * 40}" for name, f in Settings.model_fields.items() if isinstance(f.default, SecretStr)}
    return Settings.model_validate({"app_env": "production", **real, **kw})


def test_production_refuses_a_weak_or_default_previous_jwt_key() -> None:
    assert prod(jwt_previous_secret_key="a-real-former-key-" + "k" * 32).jwt_previous_secret_key
    for previous in (DEV_JWT_SECRET, "short", prod().jwt_secret_key.get_secret_value()):
        with pytest.raises(ValidationError, match="JWT_PREVIOUS_SECRET_KEY"):
            prod(jwt_previous_secret_key=previous)


def test_previous_jwt_key_is_optional_and_free_outside_production() -> None:
    assert Settings().jwt_previous_secret_key is None
    assert Settings(jwt_previous_secret_key=DEV_JWT_SECRET).jwt_previous_secret_key is not None


def test_notifier_setting_builds_the_notifier_that_delivers(tmp_path: Path) -> None:
    from core.notifications import FileNotifier, LogNotifier, OtpMessage, make_notifier

    assert isinstance(make_notifier(Settings(notifier="log").notifier), LogNotifier)
    path = tmp_path / "otp.jsonl"
    notifier = make_notifier(Settings(notifier=f"file:{path}").notifier)
    assert isinstance(notifier, FileNotifier)
    notifier.send_otp(OtpMessage(uuid.uuid4(), "a@example.com", "login", "123456", "c1"))
    assert json.loads(path.read_text())["code"] == "123456"


@pytest.mark.parametrize("value", ["", "sms", "file:", "FILE:/x"])
def test_notifier_rejects_unknown_values(value: str) -> None:
    with pytest.raises(ValidationError):
        Settings(notifier=value)


def test_rate_limit_storage_speaks_the_limits_dialect() -> None:
    assert Settings(redis_url="redis://h:6379/0").rate_limit_storage_uri == "redis://h:6379/0"
    assert Settings(redis_url="unix:///tmp/r.sock").rate_limit_storage_uri == "redis+unix:///tmp/r.sock"
    assert Settings(rate_limit_storage_url="memory://").rate_limit_storage_uri == "memory://"


def test_cors_origins_parse() -> None:
    assert Settings().cors_origins == frozenset()
    assert Settings(cors_origins=" https://a.example/, https://b.example ,").cors_origins == {
        "https://a.example",
        "https://b.example",
    }


def test_file_notifier_appends_one_private_json_line(tmp_path: Path) -> None:
    path = tmp_path / "otp.jsonl"
    notifier = make_notifier(f"file:{path}")
    assert isinstance(notifier, FileNotifier)
    uid = uuid.uuid4()
    for code in ("123456", "654321"):
        notifier.send_otp(OtpMessage(user_id=uid, email="a@b.c", purpose="login", code=code, challenge_id="c1"))
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["code"] for line in lines] == ["123456", "654321"]
    assert set(lines[0]) == {"user_id", "email", "purpose", "code", "challenge_id", "sent_at"}
    assert lines[0]["user_id"] == str(uid) and datetime.fromisoformat(lines[0]["sent_at"]).tzinfo is not None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_log_notifier_logs_the_challenge_not_the_code(caplog: pytest.LogCaptureFixture) -> None:
    logs.configure("INFO")  # the structlog -> stdlib chain every process uses
    logging.getLogger().addHandler(caplog.handler)  # configure() replaced the root handlers
    message = OtpMessage(user_id=uuid.uuid4(), email="a@b.c", purpose="login", code="987654", challenge_id="c2")
    LogNotifier().send_otp(message)
    events = [r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg.get("event") == "otp_sent"]
    assert events and events[0]["challenge_id"] == "c2" and events[0]["user_id"] == str(message.user_id)
    assert "987654" not in repr(events) and "987654" not in repr(message)


def test_lockout_counts_within_the_window_then_locks() -> None:
    policy = LoginPolicy(max_failures=3, lock_for=timedelta(minutes=15))
    t = LoginThrottle(throttle_key="x", email_digest="x", failed_attempts=0)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert [record_failure(t, policy, now + timedelta(seconds=i)) for i in range(3)] == [False, False, True]
    assert seconds_locked(t, now) == 15 * 60 + 2
    assert seconds_locked(t, now + timedelta(minutes=16)) is None
    record_success(t)
    assert t.failed_attempts == 0 and t.locked_until == now + timedelta(minutes=15, seconds=2)  # only time unlocks
    t.locked_until = None
    # Failures spread wider than the window never add up to a lock.
    assert not any(record_failure(t, policy, now + timedelta(minutes=16 * i)) for i in range(10))


def test_json_depth_ignores_brackets_in_strings() -> None:
    assert json_depth(b'{"a": [1, {"b": "[[[[\\"]]]"}]}') == 3
    assert json_depth(b"[" * 100) == 100
    assert json_depth(b'"[[["') == 0


def test_a_refused_configuration_never_echoes_a_secret() -> None:
    short = "short-but-very-distinctive-secret-x"[:30]  # under 32 bytes: refused
    with pytest.raises(ValidationError) as refused:
        prod(webhook_secrets_key=short)
    assert "WEBHOOK_SECRETS_KEY" in str(refused.value)
    assert short[-12:] not in str(refused.value) and "s" * 40 not in str(refused.value)


@pytest.mark.parametrize("key", ["jwt_secret_key", "pin_pepper", "webhook_secrets_key"])
def test_production_refuses_whitespace_keys(key: str) -> None:
    with pytest.raises(ValidationError, match=key.upper()):
        prod(**{key: " " * 64})


def test_production_refuses_one_value_for_two_secrets() -> None:
    same = "one-random-looking-value-" + "q" * 40
    with pytest.raises(ValidationError, match="different secrets"):
        prod(jwt_secret_key=same, pin_pepper=same)


def test_production_refuses_a_weak_default_or_reused_previous_webhook_key() -> None:
    real = "a-real-former-webhook-key-" + "w" * 32
    keys = prod(webhook_secrets_previous_keys=f"{real},{real}x").webhook_secrets_previous_keys
    assert [k.get_secret_value() for k in keys] == [real, real + "x"]
    assert prod(webhook_secrets_previous_keys="").webhook_secrets_previous_keys == ()
    current = prod()
    for reused in (
        DEV_WEBHOOK_SECRETS_KEY,
        "short",
        current.webhook_secrets_key.get_secret_value(),
        current.jwt_secret_key.get_secret_value(),
        current.pin_pepper.get_secret_value(),
    ):
        with pytest.raises(ValidationError, match="WEBHOOK_SECRETS_PREVIOUS_KEYS") as refused:
            prod(webhook_secrets_previous_keys=f"{real},{reused}")
        assert reused not in str(refused.value)
    # Outside production a development key may be kept as a previous one.
    assert Settings(webhook_secrets_previous_keys=DEV_WEBHOOK_SECRETS_KEY).webhook_secrets_previous_keys
