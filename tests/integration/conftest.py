from __future__ import annotations

import pytest

from tests import factories
from tests.conftest import close_app


@pytest.fixture
def make_customer(sessions, settings):  # type: ignore[no-untyped-def]
    def make(**kw):  # type: ignore[no-untyped-def]
        return factories.customer(sessions, settings, **kw)

    return make


@pytest.fixture
def make_app():  # type: ignore[no-untyped-def]
    """Build an extra app with its own settings (e.g. small rate limits, a short OTP TTL)."""
    from core.config import Settings
    from web import create_app

    apps = []

    def make(settings=None, **overrides):  # type: ignore[no-untyped-def]
        app = create_app(settings or Settings(**overrides))
        apps.append(app)
        return app

    yield make
    for app in apps:
        close_app(app)


@pytest.fixture(scope="session")
def worker_app(settings):  # type: ignore[no-untyped-def]
    """A worker app built from the settings, as ``celery -A worker`` builds one; its connections
    are closed at the end."""
    from worker.app import create_celery
    from worker.runtime import runtime

    app = create_celery(settings)
    yield app
    runtime(app).close()


@pytest.fixture
def worker_resources(worker_app):  # type: ignore[no-untyped-def]
    """The worker app's engine and Redis client; tasks this test runs in this process run in it."""
    from worker.runtime import runtime

    worker_app.set_current()
    worker_app.set_default()
    return runtime(worker_app).resources()
