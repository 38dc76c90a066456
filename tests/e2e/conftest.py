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
def _processes(log_dir: Path, otlp: Receiver) -> Iterator[tuple[str, list[processes.Proc]]]:
    """The API and the two workers, booted side by side (each start waits for its process to be
    ready: seconds of imports), stopped side by side. Package scope: these processes stop when the
    e2e tier ends, so no later tier shares its database with them."""

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

    port = processes.free_port()
    api_env = _telemetry_env(otlp, log_dir, "api")
    with ThreadPoolExecutor(3) as pool:
        starting = [
            pool.submit(processes.start_api, api_env, log_dir, ROOT, port),
            *(pool.submit(start, name, beat) for name, beat in (("w1", True), ("w2", False))),
        ]
    started = [s.result() for s in starting if s.exception() is None]
    try:
        for s in starting:
            s.result()  # the first start that failed, after every started process is in ``started``
        yield f"http://127.0.0.1:{port}", started[1:]
    finally:
        # Side by side too: a worker's stop is a warm shutdown that waits for its running tasks.
        with ThreadPoolExecutor(len(started) or 1) as pool:
            for stopped in [pool.submit(p.stop) for p in started]:
                stopped.result()


@pytest.fixture(scope="package")
def api_url(_processes: tuple[str, list[processes.Proc]]) -> str:
    """The API served by gunicorn (2 workers), exactly as the Procfile runs it."""
    return _processes[0]


@pytest.fixture(scope="package")
def workers(_processes: tuple[str, list[processes.Proc]]) -> list[processes.Proc]:
    """Two separate Celery worker processes (prefork, 2 children each) plus the sweeper beat.
    Each serves its metrics on its own port: ``proc.metrics_url``."""
    return _processes[1]


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
