"""The API under granian (WEB_SERVER=granian, ``python -m web.serve``), with the session's Celery
workers: a transfer is accepted with its rate-limit headers and one Redis round trip for its limit,
and settles; the request id, the refusals before the app (problem+json), the main process's
metrics port, a killed worker's respawn and a clean stop on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devtools import processes
from tests import factories
from tests.e2e.conftest import ROOT, bearer, wait_final
from tests.redis_monitor import Monitor
from tests.waits import wait_for

pytestmark = pytest.mark.e2e

PREFIX = f"granian-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def granian(tmp_path_factory: pytest.TempPathFactory, workers) -> Iterator[tuple[processes.Proc, str, str]]:  # type: ignore[no-untyped-def]
    """(process, API URL, metrics URL): the API under granian, 2 workers, its metrics port."""
    log_dir = tmp_path_factory.mktemp("granian")
    prom = log_dir / "prom"
    prom.mkdir()
    port, metrics_port = processes.free_port(), processes.free_port()
    env = {
        "WEB_SERVER": "granian",
        "PROMETHEUS_MULTIPROC_DIR": str(prom),
        "API_METRICS_PORT": str(metrics_port),
        "API_METRICS_ADDR": "127.0.0.1",
        "RATE_LIMIT_KEY_PREFIX": PREFIX,
    }
    proc = processes.start_api(env, log_dir, ROOT, port)
    yield proc, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics"
    proc.stop()


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_a_transfer_through_granian_settles(granian, sessions, settings, admin_user, redis_client) -> None:  # type: ignore[no-untyped-def]
    _, url, _ = granian
    alice, bob = factories.customer(sessions, settings), factories.customer(sessions, settings)
    factories.fund(sessions, admin_user, alice.account, 100)
    with httpx.Client(base_url=f"{url}/api/v1", timeout=30) as http:
        auth = bearer(http, alice.email)
        body = {
            "source_account_id": str(alice.account.id),
            "destination_account_id": str(bob.account.id),
            "amount": 10,
            "currency": "USD",
            "pin": factories.PIN,
        }
        http.post("/transfers", json={**body, "amount": 1}, headers={**auth, "Idempotency-Key": str(uuid.uuid4())})
        rid = f"granian-{uuid.uuid4()}"
        with Monitor(redis_client, PREFIX) as seen:
            r = http.post("/transfers", json=body, headers={**auth, "Idempotency-Key": "g1", "X-Request-ID": rid})
    assert r.status_code == 202, r.text
    assert r.headers["X-Request-ID"] == rid
    assert r.headers["X-RateLimit-Limit"] == "100000" and int(r.headers["X-RateLimit-Remaining"]) < 100000
    assert int(r.headers["X-RateLimit-Reset"]) > 0
    assert seen.commands == ["EVALSHA"], seen.commands  # the per-user limit: one round trip
    final = wait_final(sessions, [uuid.UUID(r.json()["id"])])
    assert final[uuid.UUID(r.json()["id"])].status.value == "COMPLETED"


@pytest.mark.parametrize(
    ("request_kw", "status", "code"),
    [
        ({"url": "/api/v1/health?q=" + "a" * 5000}, 414, "URI_TOO_LONG"),
        ({"url": "/api/v1/health", "headers": {"x-big": "b" * 9000}}, 431, "REQUEST_HEADERS_TOO_LARGE"),
    ],
)
def test_refusals_before_the_app_are_problem_json(granian, request_kw: dict, status: int, code: str) -> None:  # type: ignore[type-arg]
    with httpx.Client(base_url=granian[1], timeout=10) as client:
        r = client.get(**request_kw)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert (r.json()["status"], r.json()["code"]) == (status, code)
    assert "aaaa" not in r.text and "bbbb" not in r.text


def test_more_than_100_headers_get_granians_bare_431(granian) -> None:
    """granian (hyper) refuses over 100 header fields itself, before the app: a 431 with no body
    (not problem+json; README "Performance" says so). Nothing of the request is echoed."""
    with httpx.Client(base_url=granian[1], timeout=10) as client:
        r = client.get("/api/v1/health", headers={f"x-h{i}": "v" for i in range(120)})
    assert r.status_code == 431 and r.content == b""


def test_metrics_port_serves_every_workers_requests(granian) -> None:
    _, url, metrics_url = granian
    with httpx.Client(timeout=10) as client:
        for _ in range(6):
            assert client.get(f"{url}/api/v1/healthz").status_code == 200

        def counted() -> float | None:
            text = client.get(metrics_url).text
            total = sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("flask_http_request_duration_seconds_count{")
                and 'url_rule="/api/v1/healthz"' in line
            )
            return total if total >= 6 else None

        assert wait_for("the health checks in the metrics", counted, timeout=10)


def test_a_killed_worker_is_started_again(granian) -> None:
    proc, url, _ = granian
    before = _children(proc.popen.pid)
    assert len(before) == 2, before
    os.kill(before[0], signal.SIGKILL)

    def respawned() -> list[int] | None:
        now = _children(proc.popen.pid)
        return now if len(now) == 2 and before[0] not in now else None

    wait_for("a new worker", respawned, timeout=30)
    with httpx.Client(timeout=10) as client:
        wait_for("the API answering", lambda: client.get(f"{url}/healthz").status_code == 200, timeout=30)


def test_sigterm_stops_it_cleanly(tmp_path: Path) -> None:
    port = processes.free_port()
    proc = processes.start_api({"WEB_SERVER": "granian"}, tmp_path, ROOT, port, workers=1)
    proc.signal(signal.SIGTERM)
    assert proc.popen.wait(30) == 0
    assert "Traceback" not in proc.log(), proc.log()[-2000:]
    lines = [json.loads(line) for line in proc.log().splitlines() if line.startswith("{")]
    assert not [e for e in lines if e.get("level") == "error"], lines


def test_web_serve_runs_gunicorn_by_default(tmp_path: Path) -> None:
    """The Procfile's web entry without WEB_SERVER: gunicorn (same process, exec'd), with its
    config (gunicorn.conf.py: gthread workers)."""
    port = processes.free_port()
    proc = processes.spawn(
        "api",
        [str(processes.BIN / "python"), "-m", "web.serve", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
        {"WEB_SERVER": ""},
        tmp_path,
        ROOT,
    )
    try:
        processes.wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        assert "gunicorn" in Path(f"/proc/{proc.popen.pid}/cmdline").read_text()
    finally:
        proc.stop()
