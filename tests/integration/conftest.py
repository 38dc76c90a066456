from __future__ import annotations

import pytest

from tests import factories


@pytest.fixture(scope="session")
def admin_user(sessions):  # type: ignore[no-untyped-def]
    return factories.admin(sessions)


@pytest.fixture
def make_customer(sessions, settings):  # type: ignore[no-untyped-def]
    def make(**kw):  # type: ignore[no-untyped-def]
        return factories.customer(sessions, settings, **kw)

    return make
