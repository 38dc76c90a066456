"""The webhook settings a service or task needs, resolved once from the typed Settings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from core.config import Settings
from core.webhooks.retry import parse_schedule
from core.webhooks.secrets import SecretBox
from core.webhooks.urls import UrlRules


@dataclass(frozen=True)
class WebhookPolicy:
    rules: UrlRules
    box: SecretBox
    schedule: tuple[float, ...]  # delays before each retry
    timeout: float  # seconds for one whole HTTP attempt
    secret_grace: timedelta  # how long a rotated-out secret still signs
    queue_lease: timedelta  # a queued delivery is not queued again before this

    @property
    def attempt_lease(self) -> timedelta:
        """While an attempt is in flight its delivery is not due: longer than any attempt can take."""
        return timedelta(seconds=3 * self.timeout + 30)

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookPolicy:
        return cls(
            rules=UrlRules.from_setting(settings.app_env, settings.webhook_allowed_hosts),
            box=SecretBox(settings.webhook_secrets_key.get_secret_value(), settings.webhook_secrets_previous_key_list),
            schedule=parse_schedule(settings.webhook_retry_schedule),
            timeout=settings.webhook_timeout_seconds,
            secret_grace=timedelta(seconds=settings.webhook_secret_grace_seconds),
            queue_lease=timedelta(seconds=settings.webhook_queue_lease_seconds),
        )
