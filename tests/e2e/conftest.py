from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator

import httpx
import pytest
from sqlalchemy import select

from core.models import Transfer, TransferStatus
from tests import factories


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
    deadline = time.monotonic() + timeout
    while True:
        with sessions() as s:
            rows = {t.id: t for t in s.scalars(select(Transfer).where(Transfer.id.in_(wanted)))}
        pending = [t for t in rows.values() if t.status in (TransferStatus.PENDING, TransferStatus.PROCESSING)]
        if len(rows) == len(wanted) and not pending:
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(pending)} of {len(wanted)} transfers not final after {timeout}s")
        time.sleep(0.2)
