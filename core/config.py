"""One typed settings object, read from the environment (12-factor)."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Development defaults: obvious placeholders that production refuses to start with.
DEV_JWT_SECRET = "dev-only-jwt-secret-change-me-0123456789abcdef"  # noqa: S105
DEV_PIN_PEPPER = "dev-only-pin-pepper-change-me-0123456789abcdef"
MIN_SECRET_BYTES = 32


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    app_env: Literal["development", "test", "production"] = "development"
    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/bank"
    redis_url: str = "redis://127.0.0.1:6379/0"
    celery_broker_url: str | None = None
    jwt_secret_key: SecretStr = SecretStr(DEV_JWT_SECRET)
    pin_pepper: SecretStr = SecretStr(DEV_PIN_PEPPER)
    log_level: str = "INFO"

    access_token_minutes: int = Field(default=15, gt=0)
    refresh_token_days: int = Field(default=7, gt=0)
    pin_max_attempts: int = Field(default=5, gt=0)
    pin_lock_minutes: int = Field(default=15, gt=0)

    # Redis account locks: an optimisation only, Postgres row locks are the guard.
    lock_ttl_seconds: float = Field(default=30.0, gt=0)
    lock_wait_seconds: float = Field(default=10.0, gt=0)

    # Sweeper: re-enqueue transfers still PENDING after this many seconds.
    sweeper_interval_seconds: float = Field(default=10.0, gt=0)
    sweeper_pending_age_seconds: float = Field(default=30.0, gt=0)

    # Redis broker only: how long before an unacknowledged task is handed to another worker.
    broker_visibility_timeout_seconds: int = Field(default=3600, gt=0)

    db_statement_timeout_ms: int = Field(default=15000, gt=0)
    db_lock_timeout_ms: int = Field(default=10000, gt=0)

    @model_validator(mode="after")
    def _refuse_default_secrets_in_production(self) -> Settings:
        if self.app_env != "production":
            return self
        for name, value, default in (
            ("JWT_SECRET_KEY", self.jwt_secret_key, DEV_JWT_SECRET),
            ("PIN_PEPPER", self.pin_pepper, DEV_PIN_PEPPER),
        ):
            secret = value.get_secret_value()
            if secret == default or len(secret.encode()) < MIN_SECRET_BYTES:
                raise ValueError(
                    f"{name} must be set to at least {MIN_SECRET_BYTES} random bytes when APP_ENV=production"
                )
        return self

    @property
    def sqlalchemy_url(self) -> str:
        """DATABASE_URL with the psycopg 3 driver, whatever scheme the operator gave."""
        url = self.database_url
        for prefix in ("postgres://", "postgresql://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        return url

    @property
    def broker_url(self) -> str:
        """CELERY_BROKER_URL, else the Redis of REDIS_URL (kombu spells unix sockets differently)."""
        if self.celery_broker_url:
            return self.celery_broker_url
        if self.redis_url.startswith("unix://"):
            return "redis+socket://" + self.redis_url[len("unix://") :]
        return self.redis_url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
