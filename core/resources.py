"""What a request or a task works with: the settings, the policies built from them, a DB engine
and its sessions, a Redis client.

This is the composition root of core: ``Settings`` stays a plain object read from the
environment, and the policies a service needs (PINs, logins, OTP, webhooks) are built here
from its flat fields. Built anywhere under core.config they made an import cycle (config →
the policies' modules → core.db → config), which only function-level imports hid.

One shape for both entry points: the API opens one set per app (web/__init__.py), a worker one
per process after the prefork (worker/runtime.py), so no socket is shared across a fork.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from redis import Redis
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.config import Settings
from core.db import make_engine, make_session_factory
from core.identity.lockout import LoginPolicy
from core.identity.otp import OtpPolicy
from core.identity.pin_checks import PinPolicy
from core.webhooks.policy import WebhookPolicy
from core.webhooks.secrets import SecretBox
from core.webhooks.urls import UrlRules


@dataclass(frozen=True)
class Policies:
    """What each service needs, grouped: built once per settings object."""

    pins: PinPolicy
    logins: LoginPolicy
    otp: OtpPolicy
    webhooks: WebhookPolicy

    @classmethod
    def from_settings(cls, settings: Settings) -> Policies:
        return cls(
            pins=PinPolicy(
                pepper=settings.pin_pepper.get_secret_value().encode(),
                max_attempts=settings.pin_max_attempts,
                lock_for=timedelta(minutes=settings.pin_lock_minutes),
            ),
            logins=LoginPolicy(
                max_failures=settings.login_max_failures,
                lock_for=timedelta(minutes=settings.login_lock_minutes),
                email_max_failures=settings.login_email_max_failures,
            ),
            # The PIN pepper keys the stored codes' HMAC too (domain-separated inside the MAC).
            otp=OtpPolicy(
                key=settings.pin_pepper.get_secret_value().encode(),
                ttl_seconds=settings.otp_ttl_seconds,
                max_attempts=settings.otp_max_attempts,
            ),
            webhooks=webhook_policy(settings),
        )


def webhook_policy(settings: Settings) -> WebhookPolicy:
    return WebhookPolicy(
        rules=UrlRules(production=settings.app_env == "production", allowed_hosts=settings.webhook_allowed_hosts),
        box=SecretBox(
            settings.webhook_secrets_key.get_secret_value(),
            [k.get_secret_value() for k in settings.webhook_secrets_previous_keys],
        ),
        schedule=settings.webhook_retry_schedule,
        timeout=settings.webhook_timeout_seconds,
        secret_grace=timedelta(seconds=settings.webhook_secret_grace_seconds),
        queue_lease=timedelta(seconds=settings.webhook_queue_lease_seconds),
        endpoint_concurrency=settings.webhook_endpoint_concurrency,
    )


@dataclass(frozen=True)
class Resources:
    settings: Settings
    policies: Policies
    engine: Engine
    sessions: sessionmaker[Session]
    redis: Redis

    @classmethod
    def open(cls, settings: Settings, *, pool_size: int, redis_timeout: float) -> Resources:
        engine = make_engine(settings, pool_size=pool_size)
        return cls(
            settings=settings,
            policies=Policies.from_settings(settings),
            engine=engine,
            sessions=make_session_factory(engine),
            redis=Redis.from_url(settings.redis_url, socket_timeout=redis_timeout, socket_connect_timeout=3),
        )

    def close(self) -> None:
        self.engine.dispose()
        self.redis.close()
