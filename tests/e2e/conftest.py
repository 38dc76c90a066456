from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from core.models import Transfer, TransferStatus
from devtools import processes
from tests import factories
from tests.otlp_receiver import Receiver
from tests.waits import wait_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="package")
def http(api_url: str, workers) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    """An HTTP client for the gunicorn API, with the Celery workers running."""
    with httpx.Client(base_url=f"{api_url}/api/v1", timeout=30) as client:
        yield client


def _telemetry_env(otlp: Receiver, log_dir: Path, name: str) -> dict[str, str]:
    prom_dir = log_dir / f"prom-{name}"
    prom_dir.mkdir()
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.url,
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "PROMETHEUS_MULTIPROC_DIR": str(prom_dir),
        "METRICS_REFRESH_SECONDS": "1",
    }


@pytest.fixture(scope="package")
def api_url(log_dir: Path, otlp: Receiver) -> Iterator[str]:
    """The API served by gunicorn (2 workers), exactly as the Procfile runs it. Package scope: these
    processes stop when the e2e tier ends, so no later tier shares its database with them."""
    port = processes.free_port()
    proc = processes.start_api(_telemetry_env(otlp, log_dir, "api"), log_dir, ROOT, port)
    yield f"http://127.0.0.1:{port}"
    proc.stop()


@pytest.fixture(scope="package")
def workers(log_dir: Path, otlp: Receiver) -> Iterator[list[processes.Proc]]:
    """Two separate Celery worker processes (prefork, 2 children each) plus the sweeper beat.
    Each serves its metrics on its own port: ``proc.metrics_url``."""

    def start(name: str, beat: bool) -> processes.Proc:
        port = processes.free_port()
        env = {
            **_telemetry_env(otlp, log_dir, name),
            "WORKER_METRICS_PORT": str(port),
            "WORKER_METRICS_ADDR": "127.0.0.1",
            # The beat materialises scheduled transfers every second (the demo waits for one), not every 10.
            "SCHEDULE_INTERVAL_SECONDS": "1",
        }
        proc = processes.start_worker(name, env, log_dir, ROOT, concurrency=2, beat=beat)
        proc.metrics_url = f"http://127.0.0.1:{port}/metrics"  # type: ignore[attr-defined]
        return proc

    # Side by side: each start waits for its worker's " ready." (seconds of imports and boot).
    with ThreadPoolExecutor(2) as pool:
        starting = [pool.submit(start, name, beat) for name, beat in (("w1", True), ("w2", False))]
    procs = [s.result() for s in starting]
    yield procs
    for p in procs:
        p.stop()


@pytest.fixture(scope="package")
def backlog_exporter(log_dir: Path) -> Iterator[processes.Proc]:
    """The backlog exporter process; ``proc.metrics_url`` serves the backlog gauges."""
    port = processes.free_port()
    proc = processes.start_backlog_exporter({"METRICS_REFRESH_SECONDS": "1"}, log_dir, ROOT, port)
    proc.metrics_url = f"http://127.0.0.1:{port}/metrics"  # type: ignore[attr-defined]
    yield proc
    proc.stop()


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
