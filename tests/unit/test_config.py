import pytest
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from core.config import Settings


def test_production_refuses_default_secrets() -> None:
    with pytest.raises(ValidationError, match="JWT_SECRET_KEY"):
        Settings(app_env="production")


def test_production_refuses_short_secrets() -> None:
    with pytest.raises(ValidationError, match="PIN_PEPPER"):
        Settings(app_env="production", jwt_secret_key="j" * 40, pin_pepper="short")


def test_production_refuses_the_default_webhook_secrets_key() -> None:
    with pytest.raises(ValidationError, match="WEBHOOK_SECRETS_KEY"):
        Settings(app_env="production", jwt_secret_key="j" * 40, pin_pepper="p" * 40)


def test_production_starts_with_real_secrets_and_never_shows_them() -> None:
    s = Settings(app_env="production", jwt_secret_key="j" * 40, pin_pepper="p" * 40, webhook_secrets_key="w" * 40)
    assert s.jwt_secret_key.get_secret_value() == "j" * 40
    for secret in ("j" * 40, "p" * 40, "w" * 40):
        assert secret not in repr(s) and secret not in str(s.model_dump())


def test_broker_defaults_to_redis_and_speaks_kombu_for_sockets() -> None:
    assert Settings(redis_url="redis://h:6379/0", celery_broker_url=None).broker_url == "redis://h:6379/0"
    sock = Settings(redis_url="unix:///tmp/r.sock", celery_broker_url=None)
    assert sock.broker_url == "redis+socket:///tmp/r.sock"
    assert Settings(celery_broker_url="amqp://guest@h//").broker_url == "amqp://guest@h//"


def test_database_url_gets_the_psycopg3_driver() -> None:
    assert Settings(database_url="postgres://u@h/db").sqlalchemy_url == "postgresql+psycopg://u@h/db"
    # Parsed by SQLAlchemy (make_url): credentials, port and options keep their meaning.
    url = Settings(database_url="postgresql://u:p%40ss@h:6432/db?sslmode=require").sqlalchemy_url
    assert url == "postgresql+psycopg://u:p%40ss@h:6432/db?sslmode=require"
    assert make_url(url).password == "p@ss"
    # A URL that names its driver is used as given.
    given = "postgresql+psycopg://u@/db?host=/run/postgresql"
    assert Settings(database_url=given).sqlalchemy_url == given
