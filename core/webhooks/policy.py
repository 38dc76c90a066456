"""The webhook settings a service or task needs: built once per settings object (``Resources.policies``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

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
    endpoint_concurrency: int = 1  # attempts in flight per endpoint, across all webhook workers

    @property
    def attempt_lease(self) -> timedelta:
        """While an attempt is in flight its delivery is not due: longer than any attempt can take."""
        return timedelta(seconds=3 * self.timeout + 30)
