from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator

import httpx
import pytest
from sqlalchemy import select

from core.models import Transfer, TransferStatus
from tests import factories
from tests.waits import wait_for


@pytest.fixture(scope="session")
def admin_user(sessions):  # type: ignore[no-untyped-def]
    return factories.admin(sessions)


@pytest.fixture(scope="session")
def http(api_url: str, workers) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    """An HTTP client for the gunicorn API, with the Celery workers running."""
    with httpx.Client(base_url=f"{api_url}/api/v1", timeout=30) as client:
        yield client


def bearer(http: httpx.Client, email: str, password: str = factories.PASSWORD) -> dict[str, str]:
    r = http.post("/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def wait_final(sessions, ids: Iterable[uuid.UUID], timeout: float = 120) -> dict[uuid.UUID, Transfer]:  # type: ignore[no-untyped-def]
    wanted = set(ids)

    def final() -> dict[uuid.UUID, Transfer] | None:
        with sessions() as s:
            rows = {t.id: t for t in s.scalars(select(Transfer).where(Transfer.id.in_(wanted)))}
        done = len(rows) == len(wanted) and all(t.status != TransferStatus.PENDING for t in rows.values())
        return rows if done else None

    rows: dict[uuid.UUID, Transfer] = wait_for(f"{len(wanted)} transfers final", final, timeout, interval=0.2)
    return rows
