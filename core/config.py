"""One typed settings object, read from the environment (12-factor)."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url

from core.accounts.limits import Limits
from core.money import MAX_AMOUNT
from core.webhooks.retry import DEFAULT_SCHEDULE, parse_schedule

# Development defaults: obvious placeholders that production refuses to start with.
DEV_JWT_SECRET = "dev-only-jwt-secret-change-me-0123456789abcdef"  # noqa: S105
DEV_PIN_PEPPER = "dev-only-pin-pepper-change-me-0123456789abcdef"
DEV_WEBHOOK_SECRETS_KEY = "dev-only-webhook-secrets-key-change-me-0123456789"
MIN_SECRET_BYTES = 32


def _multihost_as_query(database_url: str) -> str:
    """A libpq multi-host netloc, which SQLAlchemy cannot parse, in SQLAlchemy's own spelling
    (``?host=h1:5432&host=h2:5433``); the dialect hands libpq ``host=h1,h2 port=5432,5433``."""
    scheme, sep, rest = database_url.partition("://")
    netloc, _, tail = rest.partition("/")
    userinfo, at, hostlist = netloc.rpartition("@")
    if not sep or "," not in hostlist:
        return database_url
    path, _, query = tail.partition("?")
    hosts = "&".join(f"host={host}" for host in hostlist.split(","))
    return f"{scheme}://{userinfo}{at}/{path}?{hosts}{'&' + query if query else ''}"


class Settings(BaseSettings):
    """The flat settings, one field per environment variable. The policies services need are
    built from them in the composition root (core.resources.Policies), not here: this module
    imports nothing of the bank's but the retry schedule's parser."""

    # hide_input_in_errors: a refused configuration must never echo a secret's value.
    model_config = SettingsConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)

    app_env: Literal["development", "test", "production"] = "development"
    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/bank"
    redis_url: str = "redis://127.0.0.1:6379/0"
    celery_broker_url: str | None = None
    jwt_secret_key: SecretStr = SecretStr(DEV_JWT_SECRET)
    # Key rotation: tokens signed with the previous key still verify until they expire.
    jwt_previous_secret_key: SecretStr | None = None
    pin_pepper: SecretStr = SecretStr(DEV_PIN_PEPPER)
    log_level: str = "INFO"

    access_token_minutes: int = Field(default=15, gt=0)
    refresh_token_days: int = Field(default=7, gt=0)
    pin_max_attempts: int = Field(default=5, gt=0)
    pin_lock_minutes: int = Field(default=15, gt=0)

    # Security (issue 6): OTP, login lockout, rate limits, CORS. See README "Security".
    notifier: str = Field(default="log", pattern=r"^(log|file:.+)$")  # how OTP codes are delivered
    otp_ttl_seconds: int = Field(default=300, gt=0)
    otp_max_attempts: int = Field(default=5, gt=0)
    login_max_failures: int = Field(default=5, gt=0)
    login_lock_minutes: int = Field(default=15, gt=0)
    # Email-wide lock, from all client addresses together (the per-address one is login_max_failures).
    login_email_max_failures: int = Field(default=50, gt=0)
    rate_limit_login_ip: str = "20 per minute"
    rate_limit_login_account: str = "10 per minute"
    rate_limit_otp_verify: str = "10 per minute"
    rate_limit_register: str = "10 per hour"
    rate_limit_transfers: str = "30 per minute"
    rate_limit_webhook_retry: str = "10 per minute"  # manual webhook retries, per user
    rate_limit_statements: str = "30 per minute"  # statements (JSON pages and CSV files), per user
    rate_limit_key_prefix: str = "ratelimit"
    rate_limit_storage_url: str | None = None  # default: the Redis of REDIS_URL
    # CORS_ORIGINS: comma-separated allowed origins; empty: CORS closed.
    cors_origins: Annotated[frozenset[str], NoDecode] = frozenset()
    trusted_proxy_hops: int = Field(default=0, ge=0)  # X-Forwarded-For hops to trust (ProxyFix)

    # Open (not CLOSED) accounts a customer may hold; POST /accounts over it is 409.
    max_accounts_per_user: int = Field(default=10, gt=0, le=1000)
    # The bank's caps a new account gets (minor units; unset: none). Admins change them per account.
    default_limit_per_transfer: int | None = Field(default=None, ge=0, le=MAX_AMOUNT)
    default_limit_daily_outgoing: int | None = Field(default=None, ge=0, le=MAX_AMOUNT)
    default_limit_monthly_outgoing: int | None = Field(default=None, ge=0, le=MAX_AMOUNT)
    # The bank's own account at its correspondent bank: the debtor of every payout file (pain.001).
    payout_debtor_name: str = Field(default="Bank", min_length=1, max_length=70)
    payout_debtor_iban: str = Field(default="DE89370400440532013000", pattern=r"^[A-Z]{2}[0-9]{2}[A-Za-z0-9]{1,30}$")
    payout_debtor_bic: str | None = Field(default=None, pattern=r"^[A-Z]{6}[A-Z2-9][A-NP-Z0-9]([A-Z0-9]{3})?$")
    # The same account's number, as statements without an IBAN name it (BAI2 record 03, camt.053
    # Acct/Id/Othr/Id): only a statement of this account (or of the IBAN) is reconciled.
    payout_debtor_account_number: str = Field(default="400012345678", pattern=r"^[A-Za-z0-9]{1,34}$")

    # /metrics on the API port: a bearer token for scrapes. In production without it the API
    # port does not serve /metrics (web/telemetry.py); API_METRICS_PORT serves it apart.
    metrics_token: SecretStr | None = None

    # Redis account locks: an optimisation only, Postgres row locks are the guard. Leases: the
    # holder renews every third of the TTL, so a dead or paused holder frees them within a TTL.
    lock_ttl_seconds: float = Field(default=3.0, gt=0)
    lock_wait_seconds: float = Field(default=5.0, gt=0)
    # A settlement batch's transaction: how long it waits for a row lock before it gives up and
    # retries (a paused holder's), and how long a paused drainer's open transaction lives before
    # Postgres ends it and frees its rows. Together with the lease TTL they bound what one lost
    # or paused settlement process delays (README "Guarantees": at most 8 s).
    settle_lock_timeout_ms: int = Field(default=2000, gt=0)
    settle_idle_timeout_ms: int = Field(default=3000, gt=0)

    # Sweeper: re-enqueue transfers still PENDING after this many seconds.
    sweeper_interval_seconds: float = Field(default=10.0, gt=0)
    sweeper_pending_age_seconds: float = Field(default=30.0, gt=0)
    # Re-publishes of one PENDING transfer before the sweeper parks it (gauge + alert): about
    # max_requeues x sweeper_pending_age_seconds of trying (default about 30 minutes).
    sweeper_max_requeues: int = Field(default=60, gt=0)

    # Settlement: transfers route to this many partition queues by source account, and a
    # drainer settles up to settle_batch_size of a partition's transfers per transaction.
    settle_partitions: int = Field(default=2, gt=0, le=1024)
    settle_batch_size: int = Field(default=1000, gt=0, le=5000)
    # A drainer whose last batch was not full waits this long before it looks again, so
    # transfers arriving together share a transaction instead of paying one each.
    settle_linger_ms: int = Field(default=200, ge=0, le=1000)

    # Beat: how often holds past their expiry are ended EXPIRED (core/transfers/holds.py).
    hold_expiry_interval_seconds: float = Field(default=5.0, gt=0)

    # Beat: how often due scheduled transfers are materialised (core/schedules/materialiser.py);
    # an occurrence's transfer is promised within 60 s of its time.
    schedule_interval_seconds: float = Field(default=10.0, gt=0, le=30)

    # Beat: how often the sealer chains the committed audit rows (core/audit/seal.py).
    audit_seal_interval_seconds: float = Field(default=1.0, gt=0)

    # How often beat sends every queue its heartbeat task, and the backlog exporter measures
    # the backlog (queue depth, oldest pending, outbox, webhook lag, audit seal lag).
    metrics_refresh_seconds: float = Field(default=15.0, gt=0)

    # Redis broker only: how long before an unacknowledged task is handed to another worker.
    broker_visibility_timeout_seconds: int = Field(default=3600, gt=0)

    # Partner webhooks: endpoint secrets are Fernet-encrypted under a key derived from this.
    webhook_secrets_key: SecretStr = SecretStr(DEV_WEBHOOK_SECRETS_KEY)
    # Key rotation: comma-separated former keys, used only to decrypt until
    # `flask --app web rotate-webhook-secrets-key` has re-encrypted every secret under the current one.
    webhook_secrets_previous_keys: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    # WEBHOOK_RETRY_SCHEDULE: seconds before each retry, comma-separated.
    webhook_retry_schedule: Annotated[tuple[float, ...], NoDecode] = parse_schedule(DEFAULT_SCHEDULE)
    webhook_secret_grace_seconds: float = Field(default=86400.0, ge=0)  # old secret still signs
    # WEBHOOK_ALLOWED_HOSTS: comma-separated hosts exempt from the private-address guard.
    webhook_allowed_hosts: Annotated[frozenset[str], NoDecode] = frozenset()
    webhook_relay_interval_seconds: float = Field(default=1.0, gt=0)  # beat: outbox relay, due retries
    webhook_queue_lease_seconds: float = Field(default=60.0, gt=0)  # re-queue a lost delivery after this
    # Attempts in flight per endpoint across all webhook workers: a slow receiver holds at most
    # this many worker processes (keep it below the webhooks pool's concurrency).
    webhook_endpoint_concurrency: int = Field(default=1, ge=1, le=64)

    db_statement_timeout_ms: int = Field(default=15000, gt=0)
    db_lock_timeout_ms: int = Field(default=10000, gt=0)

    # Comma lists, parsed once here: the environment (and a keyword) gives the text.
    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> Any:
        return frozenset(o.rstrip("/") for o in _comma_list(value)) if isinstance(value, str) else value

    @field_validator("webhook_allowed_hosts", mode="before")
    @classmethod
    def _hosts(cls, value: Any) -> Any:
        return frozenset(h.lower() for h in _comma_list(value)) if isinstance(value, str) else value

    @field_validator("webhook_secrets_previous_keys", mode="before")
    @classmethod
    def _previous_keys(cls, value: Any) -> Any:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        return _comma_list(value) if isinstance(value, str) else value

    @field_validator("webhook_retry_schedule", mode="before")
    @classmethod
    def _retry_schedule(cls, value: Any) -> Any:
        return parse_schedule(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _refuse_default_secrets_in_production(self) -> Settings:
        if self.app_env != "production":
            return self
        for name, value, default in (
            ("JWT_SECRET_KEY", self.jwt_secret_key, DEV_JWT_SECRET),
            ("PIN_PEPPER", self.pin_pepper, DEV_PIN_PEPPER),
            ("WEBHOOK_SECRETS_KEY", self.webhook_secrets_key, DEV_WEBHOOK_SECRETS_KEY),
        ):
            secret = value.get_secret_value().strip()  # whitespace is not key material
            if secret == default or len(secret.encode()) < MIN_SECRET_BYTES:
                raise ValueError(
                    f"{name} must be set to at least {MIN_SECRET_BYTES} random bytes when APP_ENV=production"
                )
        secrets = [self.jwt_secret_key, self.pin_pepper, self.webhook_secrets_key]
        if len({v.get_secret_value() for v in secrets}) < len(secrets):
            raise ValueError("JWT_SECRET_KEY, PIN_PEPPER and WEBHOOK_SECRETS_KEY must be different secrets")
        token = self.metrics_token
        if token is not None and len(token.get_secret_value().strip().encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"METRICS_TOKEN must be at least {MIN_SECRET_BYTES} random bytes when APP_ENV=production")
        previous = self.jwt_previous_secret_key
        if previous is not None:
            # A well-known previous key would let anyone forge tokens until the rotation ends.
            old = previous.get_secret_value()
            if old in (DEV_JWT_SECRET, self.jwt_secret_key.get_secret_value()) or len(old.encode()) < MIN_SECRET_BYTES:
                raise ValueError(
                    f"JWT_PREVIOUS_SECRET_KEY must be a real former key of at least {MIN_SECRET_BYTES} bytes, "
                    "different from JWT_SECRET_KEY, when APP_ENV=production"
                )
        self._refuse_weak_previous_webhook_keys()
        return self

    def _refuse_weak_previous_webhook_keys(self) -> None:
        # A well-known or reused former key would decrypt every partner's signing secret.
        current = self.webhook_secrets_key.get_secret_value()
        others = {DEV_WEBHOOK_SECRETS_KEY, current, self.jwt_secret_key.get_secret_value()}
        others.add(self.pin_pepper.get_secret_value())
        for old in (k.get_secret_value() for k in self.webhook_secrets_previous_keys):
            if old in others or len(old.encode()) < MIN_SECRET_BYTES:
                raise ValueError(
                    f"each of WEBHOOK_SECRETS_PREVIOUS_KEYS must be a real former key of at least {MIN_SECRET_BYTES} "
                    "bytes, different from WEBHOOK_SECRETS_KEY, JWT_SECRET_KEY and PIN_PEPPER, when APP_ENV=production"
                )

    @property
    def default_limits(self) -> Limits:
        """New accounts' bank caps (DEFAULT_LIMIT_*)."""
        return Limits(
            self.default_limit_per_transfer, self.default_limit_daily_outgoing, self.default_limit_monthly_outgoing
        )

    @property
    def rate_limit_storage_uri(self) -> str:
        """RATE_LIMIT_STORAGE_URL, else the Redis of REDIS_URL (``limits`` spells unix sockets differently)."""
        if self.rate_limit_storage_url:
            return self.rate_limit_storage_url
        if self.redis_url.startswith("unix://"):
            return "redis+unix://" + self.redis_url[len("unix://") :]
        return self.redis_url

    @property
    def sqlalchemy_url(self) -> str:
        """DATABASE_URL with the psycopg 3 driver when it names none (``postgres://``,
        ``postgresql://``); a URL that names a driver is used as given. Parsed by SQLAlchemy, so
        credentials, ports and query options keep their meaning. libpq's multi-host form
        (``postgres://u@h1:5432,h2:5433/bank?target_session_attrs=read-write``, what
        ``pg_autoctl show uri`` prints) is accepted too."""
        database_url = _multihost_as_query(self.database_url)
        url = make_url(database_url)
        if url.drivername not in ("postgres", "postgresql"):
            return database_url
        return url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)

    @property
    def broker_url(self) -> str:
        """CELERY_BROKER_URL, else the Redis of REDIS_URL (kombu spells unix sockets differently)."""
        if self.celery_broker_url:
            return self.celery_broker_url
        if self.redis_url.startswith("unix://"):
            return "redis+socket://" + self.redis_url[len("unix://") :]
        return self.redis_url


def _comma_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
