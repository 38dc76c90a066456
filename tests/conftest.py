"""Real Postgres and Redis for every test that needs them: the ones in DATABASE_URL/REDIS_URL,
else embedded.

Services start in pytest_configure, before any test module imports the app, so every
settings object (API, worker, this process) reads the same environment. A run of the unit
or ops tier alone (``pytest tests/unit tests/ops``) starts nothing: they need no bank server.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from devtools import processes, services
from tests import factories, profiles
from tests.otlp_receiver import Receiver

ROOT = Path(__file__).resolve().parent.parent
TEST_DB = "bank_test"


UNIT = ROOT / "tests" / "unit"
# tests/ops: the ops/ files checked by their own tools (promtool, amtool, a real Alertmanager): no bank server.
SERVERLESS = (UNIT, ROOT / "tests" / "ops")
TIERS = ("unit", "integration", "e2e", "chaos", "ops", "ha", "jepsen")

# Hypothesis's profile (HYPOTHESIS_PROFILE: quick by default, deep for the counts written in the
# tests), loaded before any test module builds its @settings (tests/profiles.py).
profiles.load()


def _only_unit_tests(config: pytest.Config) -> bool:
    paths = [Path(str(arg).split("::")[0]).resolve() for arg in config.args]
    return bool(paths) and all(any(p == tier or tier in p.parents for tier in SERVERLESS) for p in paths)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test carries its tier's marker (``-m "not e2e and not chaos"`` is the fast loop)."""
    for item in items:
        tier = Path(str(item.path)).relative_to(ROOT / "tests").parts[0]
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("APP_ENV", "test")
    if _only_unit_tests(config):
        return
    # BANK_TEST_DATA_DIR lets two test runs on one checkout use separate embedded servers.
    data_dir = Path(os.environ.get("BANK_TEST_DATA_DIR", ROOT / ".data" / "test"))
    svc = services.start(data_dir)
    os.environ.update(
        {
            "DATABASE_URL": services.recreate_database(svc, TEST_DB),
            "REDIS_URL": svc.redis_url,
            "CELERY_BROKER_URL": svc.broker_url,
            "APP_ENV": "test",
            "LOG_LEVEL": "INFO",
            # Fast sweeper so tests of lost publishes finish quickly.
            "SWEEPER_INTERVAL_SECONDS": "1",
            "SWEEPER_PENDING_AGE_SECONDS": "3",
            # Security: OTP codes go to a file the tests read; rate limits generous enough for the
            # whole suite (tests of the limits build apps or start processes with small ones).
            "NOTIFIER": f"file:{data_dir / 'otp-codes.jsonl'}",
            "RATE_LIMIT_LOGIN_IP": "100000 per minute",
            "RATE_LIMIT_LOGIN_ACCOUNT": "100000 per minute",
            "RATE_LIMIT_OTP_VERIFY": "100000 per minute",
            "RATE_LIMIT_REGISTER": "100000 per minute",
            "RATE_LIMIT_TRANSFERS": "100000 per minute",
            "RATE_LIMIT_STATEMENTS": "100000 per minute",
            # Webhooks: fast retries and relay, short leases, a receiver on 127.0.0.1.
            "WEBHOOK_RETRY_SCHEDULE": "1,1,1",
            "WEBHOOK_RELAY_INTERVAL_SECONDS": "0.5",
            "WEBHOOK_QUEUE_LEASE_SECONDS": "5",
            "WEBHOOK_TIMEOUT_SECONDS": "5",
            "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1,localhost",
        }
    )
    config.stash[_SERVICES] = svc
    processes.migrate({}, ROOT)
    # The freshly migrated database, copied (a tenth of a second) before any test writes to it: the
    # integration tier clones it for checks over a small book of their own (tests/integration/scratch.py).
    from tests.integration import scratch

    scratch.make_template(svc, TEST_DB)


def pytest_unconfigure(config: pytest.Config) -> None:
    svc = config.stash.get(_SERVICES, None)
    if svc is not None:
        svc.stop()


_SERVICES = pytest.StashKey[services.Services]()


@pytest.fixture(scope="session")
def stack(pytestconfig: pytest.Config) -> services.Services:
    return pytestconfig.stash[_SERVICES]


@pytest.fixture(scope="session")
def settings():  # type: ignore[no-untyped-def]
    from core.config import Settings

    return Settings()


@pytest.fixture(scope="session")
def engine(settings) -> Iterator[Engine]:  # type: ignore[no-untyped-def]
    from core.db import make_engine

    eng = make_engine(settings, pool_size=10)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def committed_sessions(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose commits are real: what other processes and connections see."""
    from core.db import make_session_factory

    return make_session_factory(engine)


@pytest.fixture(scope="session")
def sessions(committed_sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    """The e2e and chaos tiers drive other processes, which see only what commits; the
    integration tier overrides this with a per-test transaction (tests/integration/conftest.py)."""
    return committed_sessions


@pytest.fixture(scope="session")
def redis_client(settings) -> Redis:  # type: ignore[no-untyped-def]
    return Redis.from_url(settings.redis_url)


@pytest.fixture(scope="session")
def app(settings) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    from web import create_app

    flask_app = create_app(settings)
    yield flask_app
    close_app(flask_app)


def close_app(flask_app: Any) -> None:
    """Close what ``create_app`` opened: the API's engine and Redis, and its Celery app's."""
    from worker.runtime import runtime

    flask_app.extensions["bank"].close()
    runtime(flask_app.extensions["celery"]).close()


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    return app.test_client()


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def otlp() -> Iterator[Receiver]:
    """Where the API and worker processes export their traces (OTLP/HTTP), kept in memory."""
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="session")
def admin_user(committed_sessions):  # type: ignore[no-untyped-def]
    """One admin for the whole run, committed: every test may reference it, none changes it."""
    return factories.admin(committed_sessions)
