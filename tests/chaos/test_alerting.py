"""The alerts in the cases they exist for: a settlement pool hung, then stopped.

Real processes: the API (gunicorn), a settlement pool and a webhooks pool (Celery prefork, each
serving /metrics), beat on its own and the backlog exporter. Scraping every 0.5 s as Prometheus
would, the test hangs the settlement pool (SIGSTOP of its prefork children: the main process
still answers scrapes, like a pool stuck in its tasks), accepts transfers nobody settles, then
kills the whole pool. It checks that the gauges move (pending transfers and the oldest one's age
grow, the settlement queues' heartbeats freeze then vanish, the webhooks pool's goes on), then
replays the recorded series through ``promtool test rules`` with the real ops/prometheus/alerts.yml
and checks which alerts fire.

Time dilation: the recording is replayed DILATION times slower (a 0.5 s tick becomes 15 s) and
every value that is a time (timestamps, relative to the start, and ages) is multiplied by the
same factor, so thresholds and ``for`` durations of minutes are reached by a run of seconds with
data of the same shape. Counter rates are not used by the alerts expected here.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from devtools import processes
from tests import factories
from tests.chaos.conftest import stop_all, wait_final
from tests.stack_metrics import ALERTS_FILE, alert_exprs, metric_names
from tests.waits import wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
TICK = 0.5  # seconds between scrapes, and METRICS_REFRESH_SECONDS (heartbeats, exporter)
DILATION = 30  # one tick replays as 15 s
HEALTHY_TICKS, HUNG_TICKS, STOPPED_TICKS = 6, 24, 16
# What the alerts query, and the pending count the test checks.
RECORDED = {name for expr in alert_exprs() for name in metric_names(expr)} | {
    "bank_pending_transfers",
    "bank_backlog_measure_errors_total",
}


Series = tuple[str, tuple[tuple[str, str], ...]]


@dataclass
class Recording:
    started: float
    ticks: int = 0
    values: dict[Series, dict[int, float]] = field(default_factory=dict)

    def add(self, name: str, labels: dict[str, str], value: float) -> None:
        self.values.setdefault((name, tuple(sorted(labels.items()))), {})[self.ticks] = value

    def series(self, name: str, **labels: str) -> list[float]:
        """Every tick's value of one series (NaN where it was missing)."""
        key = (name, tuple(sorted(labels.items())))
        return [self.values.get(key, {}).get(i, math.nan) for i in range(self.ticks)]


@dataclass
class Target:
    job: str
    instance: str
    url: str


def scrape(recording: Recording, targets: list[Target]) -> None:
    for target in targets:
        labels = {"job": target.job, "instance": target.instance}
        try:
            text = httpx.get(target.url, timeout=TICK).text
        except httpx.HTTPError:
            recording.add("up", labels, 0)
            continue
        recording.add("up", labels, 1)
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in RECORDED:
                    recording.add(sample.name, {**sample.labels, **labels}, sample.value)
    recording.ticks += 1


def record(recording: Recording, targets: list[Target], ticks: int) -> None:
    next_at = time.monotonic()
    for _ in range(ticks):
        scrape(recording, targets)
        next_at += TICK
        time.sleep(max(0.0, next_at - time.monotonic()))


def dilated(recording: Recording, name: str, value: float) -> float:
    if name.endswith("_timestamp_seconds"):
        return (value - recording.started) * DILATION
    if name.endswith("_age_seconds") or name == "bank_audit_seal_lag_seconds":
        return value * DILATION
    return value


def input_series(recording: Recording) -> list[dict[str, str]]:
    """promtool notation: a value per tick, ``stale`` where a series vanished (as Prometheus marks a
    failed scrape), ``_`` while it stays missing."""
    out = []
    for (name, labels), by_tick in sorted(recording.values.items()):
        values, seen = [], False
        for i in range(recording.ticks):
            if i in by_tick:
                values.append(repr(dilated(recording, name, by_tick[i])))
                seen = True
            else:
                values.append("stale" if seen and values[-1] not in ("stale", "_") else "_")
        selector = ", ".join(f'{k}="{v}"' for k, v in labels)
        out.append({"series": f"{name}{{{selector}}}", "values": " ".join(values)})
    return out


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


@pytest.fixture
def alerting_stack(tmp_path: Path) -> Iterator[dict[str, Any]]:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not on PATH (Debian: `apt-get install prometheus`, as .ci/run does when root)")
    from core.config import get_settings
    from worker.app import queues as queues_of

    all_queues = queues_of(get_settings())  # what the workers of this run consume

    env = {"METRICS_REFRESH_SECONDS": str(TICK)}
    procs: dict[str, processes.Proc] = {}
    targets = []

    def pool(name: str, queues: list[str]) -> processes.Proc:
        port = processes.free_port()
        prom = tmp_path / f"prom-{name}"
        prom.mkdir()
        pool_env = {
            **env,
            "PROMETHEUS_MULTIPROC_DIR": str(prom),
            "WORKER_METRICS_PORT": str(port),
            "WORKER_METRICS_ADDR": "127.0.0.1",
        }
        proc = processes.start_worker(name, pool_env, tmp_path, ROOT, concurrency=2, queues=queues)
        targets.append(Target("worker", name, f"http://127.0.0.1:{port}/metrics"))
        return proc

    try:
        api_port, exporter_port = processes.free_port(), processes.free_port()
        (tmp_path / "prom-api").mkdir()
        # Side by side: each start waits for its process to be ready (mostly importing the app).
        with ThreadPoolExecutor(5) as boot:
            starting = {
                "api": boot.submit(
                    processes.start_api,
                    {**env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom-api")},
                    tmp_path,
                    ROOT,
                    api_port,
                    workers=1,
                ),
                "settle": boot.submit(pool, "settle", ["--exclude-queues", "webhooks"]),
                "webhooks": boot.submit(pool, "webhooks", ["--queues", "webhooks"]),
                "exporter": boot.submit(processes.start_backlog_exporter, env, tmp_path, ROOT, exporter_port),
                "beat": boot.submit(processes.start_beat, env, tmp_path, ROOT),
            }
        failed = [error for error in (started.exception() for started in starting.values()) if error is not None]
        procs.update({name: started.result() for name, started in starting.items() if not started.exception()})
        if failed:
            raise failed[0]  # after every started process is in procs, which the finally stops
        targets.append(Target("backlog", "backlog", f"http://127.0.0.1:{exporter_port}/metrics"))
        yield {
            "procs": procs,
            "targets": targets,
            "api": f"http://127.0.0.1:{api_port}/api/v1",
            "queues": all_queues,
            "promtool": promtool,
            "pool": pool,
        }
    finally:
        for proc in procs.values():
            proc.signal(signal.SIGCONT)
        # Beat first, while the pools still take what it sends: a heartbeat it sent after they had
        # stopped would wait in a queue the next test measures (test_the_broker_down_... counts 3).
        if "beat" in procs:
            procs.pop("beat").stop()
        stop_all(list(procs.values()))


def test_hung_then_stopped_settlement_pool_moves_the_gauges_and_fires_the_alerts(  # type: ignore[no-untyped-def]
    alerting_stack, sessions, settings, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    procs, targets, queues = alerting_stack["procs"], alerting_stack["targets"], alerting_stack["queues"]
    settle_queues = [q for q in queues if q != "webhooks"]
    admin_user = factories.admin(sessions)
    alice, bob = factories.customer(sessions, settings), factories.customer(sessions, settings)
    factories.fund(sessions, admin_user, alice.account, 1_000)
    http = httpx.Client(base_url=alerting_stack["api"], timeout=30)
    request.addfinalizer(http.close)
    token = http.post("/auth/login", json={"email": alice.email, "password": factories.PASSWORD}).json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}

    # Healthy: every queue's heartbeat is exported before the recording starts.
    def every_queue_beats() -> bool:
        probe = Recording(time.time())
        scrape(probe, targets)
        beats = {
            dict(labels).get("queue") for (name, labels) in probe.values if name.endswith("heartbeat_timestamp_seconds")
        }
        return beats >= set(queues)

    wait_for("a heartbeat from every queue", every_queue_beats, timeout=30, interval=TICK)

    recording = Recording(time.time())
    record(recording, targets, HEALTHY_TICKS)
    hung_at = recording.ticks

    # Hang: the prefork children stop; the main process still serves /metrics.
    for pid in children(procs["settle"].popen.pid):
        os.kill(pid, signal.SIGSTOP)
    submitted = time.time()
    ids = []
    for amount in (10, 20, 30, 40, 50):
        r = http.post(
            "/transfers",
            json={
                "source_account_id": str(alice.account.id),
                "destination_account_id": str(bob.account.id),
                "amount": amount,
                "currency": "USD",
                "pin": factories.PIN,
            },
            headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
        )
        assert r.status_code == 202, r.text
        ids.append(uuid.UUID(r.json()["id"]))
    record(recording, targets, HUNG_TICKS - 1)
    hung_end = recording.ticks - 1

    # Stop: the whole pool is gone (its target down, its series stale).
    procs["settle"].signal(signal.SIGKILL)
    procs["settle"].popen.wait(10)
    record(recording, targets, STOPPED_TICKS)
    stopped_end = recording.ticks - 1
    now = time.time()

    # The gauges moved, from the exporter, while no settlement ran.
    pending = recording.series("bank_pending_transfers", job="backlog", instance="backlog")
    oldest = recording.series("bank_oldest_pending_transfer_age_seconds", job="backlog", instance="backlog")
    assert pending[hung_end] >= len(ids) and pending[stopped_end] >= len(ids), pending
    assert oldest[stopped_end] >= now - submitted - 2, oldest
    assert oldest[stopped_end] > oldest[hung_end] > oldest[hung_at], oldest
    up = recording.series("up", job="worker", instance="settle")
    assert up[hung_at:hung_end] == [1] * (hung_end - hung_at) and up[stopped_end] == 0, up

    def beat(queue: str, instance: str) -> list[float]:
        return recording.series("bank_worker_heartbeat_timestamp_seconds", queue=queue, job="worker", instance=instance)

    frozen = beat("transfers", "settle")
    assert frozen[hung_end] <= submitted + 1, "the hung pool's heartbeat went on"
    assert all(math.isnan(v) for v in frozen[hung_end + 2 :]), "the stopped pool's heartbeat is still exported"
    webhooks = beat("webhooks", "webhooks")
    assert webhooks[stopped_end] >= now - 5 * TICK - 1, "the webhooks pool's heartbeat stopped"

    # The alerts, on the recorded series.
    def at(tick: int, name: str, *fired: dict[str, str]) -> dict[str, Any]:
        return {
            "eval_time": f"{tick * int(TICK * DILATION)}s",
            "alertname": name,
            "exp_alerts": [{"exp_labels": labels} for labels in fired],
        }

    critical = {"severity": "critical"}
    tests = [
        {
            "interval": f"{int(TICK * DILATION)}s",
            "input_series": input_series(recording),
            "alert_rule_test": [
                at(hung_at - 1, "NoWorkerHeartbeat"),
                at(hung_at - 1, "BacklogNotMeasured"),
                at(hung_end, "NoWorkerHeartbeat", *({"queue": q, **critical} for q in settle_queues)),
                at(hung_end, "TargetDown"),
                at(hung_end, "BacklogNotMeasured"),
                # The stopped pool's queues are its TargetDown page (one outage, one page), though
                # they alerted while it hung and its target answered.
                at(stopped_end, "NoWorkerHeartbeat"),
                at(stopped_end, "OldestPendingTransferTooOld", {"severity": "warning"}),
                at(stopped_end, "TargetDown", {"job": "worker", "instance": "settle", **critical}),
                at(stopped_end, "BacklogNotMeasured"),
            ],
        }
    ]
    document = yaml.safe_load(ALERTS_FILE.read_text())
    for group in document["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)  # promtool compares them exactly; check rules validates them
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(document, sort_keys=False))
    spec = {"rule_files": ["alerts.yml"], "evaluation_interval": f"{int(TICK * DILATION)}s", "tests": tests}
    (tmp_path / "recorded_test.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
    result = subprocess.run(
        [alerting_stack["promtool"], "test", "rules", "recorded_test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"

    # A fresh pool settles what was accepted meanwhile: every 202 still ends final.
    alerting_stack["procs"]["settle2"] = alerting_stack["pool"]("settle2", ["--exclude-queues", "webhooks"])
    wait_final(sessions, ids, timeout=60)


LIVE_SCALE = 20  # the live test's rule `for` and Alertmanager durations, divided (30 s -> 1.5 s)


def test_the_shipped_config_scrapes_the_production_api_and_its_death_pages(tmp_path: Path) -> None:
    """APP_ENV=production with METRICS_TOKEN set, the API started by the Procfile's web entry: the
    API port answers /metrics 401 to a scrape without the token (the SRE's TargetDown{job="api"}
    on a quiet day); the shipped prometheus.yml scrapes the gunicorn master's API_METRICS_PORT
    instead. Then one live fault end to end: the API is killed, real Prometheus fires TargetDown
    and real Alertmanager pages on-call, and the recovery is announced. Only addresses change in
    the copies (and durations, scaled)."""
    from bench.system import parse_procfile
    from tests.ops.servers import start_alertmanager, start_prometheus, token_scrape_job

    secrets = {name: uuid.uuid4().hex + uuid.uuid4().hex for name in ("JWT", "PIN", "WEBHOOK", "METRICS")}
    api_port, metrics_port = processes.free_port(), processes.free_port()
    # Only addresses set: the Procfile's web entry makes its multiprocess directory and serves
    # the metrics port itself (it used to serve no API metrics at all outside docker-compose).
    env = {
        "APP_ENV": "production",
        "JWT_SECRET_KEY": secrets["JWT"],
        "PIN_PEPPER": secrets["PIN"],
        "WEBHOOK_SECRETS_KEY": secrets["WEBHOOK"],
        "METRICS_TOKEN": secrets["METRICS"],
        "PORT": str(api_port),
        "WEB_CONCURRENCY": "1",
        "API_METRICS_PORT": str(metrics_port),
        "API_METRICS_ADDR": "127.0.0.1",
        "PATH": f"{processes.BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    web = parse_procfile((ROOT / "Procfile").read_text())["web"]

    def start_api() -> processes.Proc:
        proc = processes.spawn("api", ["bash", "-c", web], env, tmp_path, ROOT)
        processes.wait_http(f"http://127.0.0.1:{api_port}/healthz", proc)
        return proc

    api = start_api()
    am = prometheus = None
    try:
        public = httpx.get(f"http://127.0.0.1:{api_port}/metrics", timeout=5)
        assert public.status_code == 401, "production serves /metrics on the API port without the token"
        am = start_alertmanager(tmp_path, LIVE_SCALE)
        unused = [f"127.0.0.1:{processes.free_port()}"]  # the jobs this test does not run: down, not scraped
        # The shipped api target, at this test's address: its port is the web service's public
        # port (8000) or its API_METRICS_PORT in docker-compose.yml.
        compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["web"]
        ports = {"8000": api_port, str((compose.get("environment") or {}).get("API_METRICS_PORT")): metrics_port}
        shipped = yaml.safe_load((ROOT / "ops" / "prometheus" / "prometheus.yml").read_text())
        (api_target,) = next(j for j in shipped["scrape_configs"] if j["job_name"] == "api")["static_configs"][0][
            "targets"
        ]
        # The documented alternative: the public port, the token read from a credentials file.
        token_file = tmp_path / "metrics_token"
        token_file.write_text(secrets["METRICS"])
        token_job = token_scrape_job()
        (token_target,) = token_job["static_configs"][0]["targets"]
        token_job.update(
            job_name="api-token", static_configs=[{"targets": [f"127.0.0.1:{ports[token_target.rsplit(':', 1)[1]]}"]}]
        )
        token_job["authorization"]["credentials_file"] = str(token_file)
        prometheus = start_prometheus(
            tmp_path,
            {
                "api": [f"127.0.0.1:{ports[api_target.rsplit(':', 1)[1]]}"],
                "worker": unused,
                "backlog": unused,
                "alertmanager": [am.address],
            },
            am.address,
            interval="1s",
            rule_scale=LIVE_SCALE,
            extra_jobs=[token_job],
        )
        for job in ("api", "api-token"):
            wait_for(
                f"the API scraped up by job {job}",
                lambda job=job: [r["value"][1] for r in prometheus.query(f'up{{job="{job}"}}')] == ["1"],
                timeout=30,
                interval=0.5,
            )
            assert prometheus.query(f'flask_http_request_duration_seconds_count{{job="{job}"}}') or prometheus.query(
                f'app_info{{job="{job}"}}'
            ), f"job {job} scrapes the API's metrics"

        def api_paged(status: str) -> Any:
            return lambda notes: any(
                note["status"] == status and any(a["labels"].get("job") == "api" for a in note["alerts"])
                for _, note in notes
            )

        killed = time.monotonic()
        api.signal(signal.SIGKILL)
        api.popen.wait(10)
        notes = am.wait_for("oncall", api_paged("firing"), timeout=60)
        paged_at = next(at for at, note in notes if api_paged("firing")([(at, note)]))
        (page,) = [a for _, n in notes for a in n["alerts"] if a["labels"].get("job") == "api"][:1]
        assert page["labels"]["alertname"] == "TargetDown" and page["labels"]["severity"] == "critical"
        assert paged_at - killed < 30, f"paged {paged_at - killed:.1f}s after the kill"

        api = start_api()
        am.wait_for("oncall", api_paged("resolved"), timeout=60)
    finally:
        if prometheus is not None:
            prometheus.proc.stop()
        if am is not None:
            am.stop()
        api.stop()


def test_the_broker_down_is_named_and_its_queue_depths_are_not_zeroed(  # type: ignore[no-untyped-def]
    stack, redis_client, tmp_path: Path
) -> None:
    """Issue 19 item 15: the exporter reported a depth of 0 for every queue on any error, so
    QueueDepthHigh could not fire during a broker outage. The real exporter, the broker (Redis)
    stopped: the depths stay as last measured, bank_dependency_up names the broker (and Redis),
    and the recorded series replayed through promtool fire DependencyDown and BacklogNotMeasured."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not on PATH (Debian: `apt-get install prometheus`, as .ci/run does when root)")
    if stack._redis_proc is None:
        pytest.skip("needs the embedded Redis as broker to stop and start it")
    from core.config import get_settings
    from worker.app import queues as queues_of

    queue = next(q for q in queues_of(get_settings()) if q.startswith("transfers."))
    port = processes.free_port()
    exporter = processes.start_backlog_exporter({"METRICS_REFRESH_SECONDS": str(TICK)}, tmp_path, ROOT, port)
    targets = [Target("backlog", "backlog", f"http://127.0.0.1:{port}/metrics")]
    waiting = [f"not-a-task-{i}" for i in range(3)]  # nothing consumes them here; removed below
    redis_client.rpush(queue, *waiting)
    stopped = False
    try:

        def depth() -> float:
            probe = Recording(time.time())
            scrape(probe, targets)
            key = ("bank_queue_length", (("instance", "backlog"), ("job", "backlog"), ("queue", queue)))
            return probe.values.get(key, {}).get(0, -1)

        wait_for("the waiting messages measured", lambda: depth() == 3, timeout=15, interval=TICK)
        recording = Recording(time.time())
        record(recording, targets, HEALTHY_TICKS)
        down_at = recording.ticks
        stack.stop_redis()
        stopped = True
        record(recording, targets, 24)
        down_end = recording.ticks - 1
    finally:
        if stopped:
            stack.start_redis()
        wait_for("Redis back", lambda: bool(redis_client.ping()), timeout=15, interval=0.2)
        redis_client.lrem(queue, 0, waiting[0])
        for message in waiting[1:]:
            redis_client.lrem(queue, 0, message)
        exporter.stop()

    labels = {"job": "backlog", "instance": "backlog"}
    depths = recording.series("bank_queue_length", queue=queue, **labels)
    assert depths[down_at - 1] == 3 and depths[down_end] == 3, depths  # as last measured, never 0
    assert recording.series("bank_dependency_up", dependency="broker", **labels)[down_end] == 0
    assert recording.series("bank_dependency_up", dependency="postgres", **labels)[down_end] == 1
    errors = recording.series("bank_backlog_measure_errors_total", source="broker", **labels)
    assert errors[down_end] > errors[down_at - 1], errors

    def at(tick: int, name: str, *fired: dict[str, str]) -> dict[str, Any]:
        return {
            "eval_time": f"{tick * int(TICK * DILATION)}s",
            "alertname": name,
            "exp_alerts": [{"exp_labels": labels} for labels in fired],
        }

    critical = {"severity": "critical"}
    tests = [
        {
            "interval": f"{int(TICK * DILATION)}s",
            "input_series": input_series(recording),
            "alert_rule_test": [
                at(down_at - 1, "DependencyDown"),
                at(
                    down_end,
                    "DependencyDown",
                    {"dependency": "broker", **critical},
                    {"dependency": "redis", **critical},
                ),
                at(down_end, "BacklogNotMeasured", critical),
            ],
        }
    ]
    document = yaml.safe_load(ALERTS_FILE.read_text())
    for group in document["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(document, sort_keys=False))
    spec = {"rule_files": ["alerts.yml"], "evaluation_interval": f"{int(TICK * DILATION)}s", "tests": tests}
    (tmp_path / "broker_test.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
    command = [promtool, "test", "rules", "broker_test.yml"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
