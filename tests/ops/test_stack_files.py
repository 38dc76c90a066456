"""The container stack files: docker-compose.yml, Grafana dashboards and the ops/ files they mount.

The compose file is validated by the compose client itself (``docker-compose`` or the
``docker compose`` plugin), which needs no Docker engine for ``config``; where neither is
installed those tests skip. The Prometheus config and rules are checked, and the alerts
unit-tested, by ``promtool`` (Debian: the ``prometheus`` package); without it those tests
skip. Everything else parses the files (PyYAML, pinned in requirements-dev.txt) and
cross-checks them: compose mounts, scrape targets, datasources, alert fields, runbooks and
the metric names queried (tests/stack_metrics.py). The alert scenarios are in
test_alert_rules.py, the time to page in test_time_to_page.py, Alertmanager's routing against
the real server in test_alertmanager.py.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.stack_metrics import (
    ALERTS_FILE,
    DASHBOARDS,
    dashboard_exprs,
    dashboard_files,
    iter_panels,
    metric_names,
    metric_names_queried,
    rules,
)

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
PROMETHEUS_FILE = ROOT / "ops" / "prometheus" / "prometheus.yml"
DATASOURCES_FILE = ROOT / "ops" / "grafana" / "provisioning" / "datasources" / "datasources.yml"
DASHBOARD_PROVIDERS_FILE = ROOT / "ops" / "grafana" / "provisioning" / "dashboards" / "dashboards.yml"

SERVICES = {
    "postgres",
    "redis",
    "migrate",
    "web",
    "worker",
    "webhook-worker",
    "maintenance-worker",
    "beat",
    "backlog-exporter",
    "prometheus",
    "alertmanager",
    "grafana",
    "jaeger",
}
ALERTMANAGER_FILE = ROOT / "ops" / "alertmanager" / "alertmanager.yml"
TIMEOUT = 60


@cache
def compose_command() -> tuple[str, ...] | None:
    """The compose client on this machine: Debian's ``docker-compose``, else ``docker compose``."""
    if shutil.which("docker-compose"):
        return ("docker-compose",)
    if shutil.which("docker"):
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
        if probe.returncode == 0:
            return ("docker", "compose")
    return None


def run_compose(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = compose_command()
    if cmd is None:
        pytest.skip("no compose client: neither `docker-compose` nor `docker compose` is installed")
    # Only the compose file decides the project: no COMPOSE_* overrides from the caller.
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    return subprocess.run(
        [*cmd, "-f", str(COMPOSE_FILE), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_compose_file_is_valid() -> None:
    result = run_compose("config", "-q")
    assert result.returncode == 0, f"compose config failed:\n{result.stdout}\n{result.stderr}"


def test_compose_defines_every_service() -> None:
    result = run_compose("config", "--services")
    assert result.returncode == 0, f"compose config --services failed:\n{result.stderr}"
    services = {line.strip() for line in result.stdout.splitlines() if line.strip()}
    assert services >= SERVICES, f"missing services: {sorted(SERVICES - services)}"


def test_compose_bind_mounts_exist() -> None:
    """Every ./ops/... file or folder that docker-compose.yml mounts is in the repo."""
    sources = re.findall(r"^\s*-\s*\"?(\./[^:\s\"]+):", COMPOSE_FILE.read_text(), flags=re.MULTILINE)
    assert sources, "docker-compose.yml mounts nothing from the repo"
    missing = [s for s in sources if not (ROOT / s).exists()]
    assert not missing, f"mounted but not in the repo: {missing}"


def test_there_are_dashboards() -> None:
    assert dashboard_files(), f"no dashboard JSON under {DASHBOARDS}"


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_dashboard_panels_have_queries(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    assert dashboard.get("uid"), f"{path.name}: dashboard has no uid"
    panels = list(iter_panels(dashboard.get("panels", [])))
    assert panels, f"{path.name}: dashboard has no panels"
    for panel in panels:
        title = panel.get("title", panel.get("id"))
        targets = panel.get("targets")
        assert targets, f"{path.name}: panel {title!r} has no targets"
        for target in targets:
            expr = target.get("expr")
            assert isinstance(expr, str), f"{path.name}: panel {title!r} has a target without expr"
            assert expr.strip(), f"{path.name}: panel {title!r} has an empty expr"


def test_dashboard_uids_are_unique() -> None:
    uids = [json.loads(p.read_text()).get("uid") for p in dashboard_files()]
    assert len(uids) == len(set(uids)), f"duplicate dashboard uids: {uids}"


# --- How the files refer to each other ---------------------------------------------------------

# Where the exported metrics are declared: metrics.py (API and workers) and the backlog
# exporter's own registry (backlog_gauges.py, whose ``gauge(...)`` helper declares them).
METRICS_MODULES = (
    ROOT / "core" / "observability" / "metrics.py",
    ROOT / "core" / "observability" / "backlog_gauges.py",
)
FLASK_METRICS = {"flask_http_request_duration_seconds", "flask_http_request_total"}

# What the Transfers dashboard answers: every one of these must be on some panel.
DASHBOARD_METRICS = FLASK_METRICS | {
    "bank_transfers_accepted_total",
    "bank_transfers_settled_total",
    "bank_transfer_accept_to_final_seconds",
    "bank_settle_transaction_seconds",
    "bank_lock_wait_seconds",
    "bank_lock_failures_total",
    "bank_task_retries_total",
    "bank_money_moved_minor_units_total",
    "bank_webhook_deliveries_total",
    "bank_webhook_attempt_seconds",
    "bank_webhook_attempts_total",
    "bank_webhook_oldest_undelivered_age_seconds",
    "bank_backlog_measured_timestamp_seconds",
    "bank_queue_length_measured_timestamp_seconds",
    "bank_queue_length",
    "bank_pending_transfers",
    "bank_oldest_pending_transfer_age_seconds",
    "bank_outbox_backlog",
    "bank_worker_heartbeat_timestamp_seconds",
    "bank_audit_unsealed_rows",
    "bank_audit_seal_lag_seconds",
    "bank_dependency_up",
    "bank_backlog_measure_errors_total",
    "bank_scheduler_last_tick_timestamp_seconds",
    "bank_queue_configured",
    "bank_holds_total",
    "bank_refunds_total",
}

REQUIRED_ALERTS = {
    "TargetDown",
    "DependencyDown",
    "SchedulerDown",
    "NoWorkerHeartbeat",
    "SettleErrorRateHigh",
    "ApiErrorBudgetFastBurn",
    "ApiErrorBudgetSlowBurn",
    "ApiLatencyBudgetBurn",
    "ApiTransfersNotAccepted",
    "OldestPendingTransferTooOld",
    "QueueDepthHigh",
    "BacklogNotMeasured",
    "WebhookEndpointDown",
    "WebhookFailureRateHigh",
    "WebhookDeliveryLagHigh",
    "AuditSealLagHigh",
    "SettlementInternalError",
    "TransfersParked",
}
SEVERITIES = {"info", "warning", "critical"}


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _mounts(service: str) -> dict[str, Path]:
    """Container path -> repo path of each bind mount ``./...:/target[:mode]`` of a compose service."""
    mounts = {}
    for volume in _yaml(COMPOSE_FILE)["services"][service].get("volumes", []):
        if isinstance(volume, str) and volume.startswith("./"):
            source, target = volume.split(":")[:2]
            mounts[target] = (ROOT / source).resolve()
    return mounts


def _environment(service: str) -> dict[str, str]:
    env = _yaml(COMPOSE_FILE)["services"][service].get("environment") or {}
    if isinstance(env, list):  # the KEY=VALUE list form
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _scrape_targets() -> dict[str, list[str]]:
    config = _yaml(PROMETHEUS_FILE)
    return {
        job["job_name"]: [target for static in job.get("static_configs", []) for target in static.get("targets", [])]
        for job in config.get("scrape_configs", [])
    }


def _exported_bank_metrics() -> set[str]:
    """Metric names declared in METRICS_MODULES, as exported (counters end in _total)."""
    names = set()
    calls = [node for path in METRICS_MODULES for node in ast.walk(ast.parse(path.read_text()))]
    for node in calls:
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            continue
        if node.func.id not in {"Counter", "Gauge", "Histogram", "gauge", "CounterMetricFamily"} or not node.args:
            continue
        first = node.args[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            name = first.value
            counter = node.func.id in {"Counter", "CounterMetricFamily"}
            names.add(f"{name}_total" if counter and not name.endswith("_total") else name)
    return names


def test_prometheus_scrapes_the_api_the_workers_and_the_backlog_exporter() -> None:
    config = _yaml(PROMETHEUS_FILE)
    targets = _scrape_targets()
    assert targets.get("api") == ["web:9810"], targets
    assert targets.get("worker") == ["worker:9808", "webhook-worker:9808", "maintenance-worker:9808"], targets
    assert targets.get("backlog") == ["backlog-exporter:9809"], targets
    for job in config["scrape_configs"]:
        if job["job_name"] in {"api", "worker", "backlog"}:
            assert job.get("metrics_path", "/metrics") == "/metrics", job


def test_the_api_is_scraped_on_its_metrics_port() -> None:
    """In production the API port answers /metrics 401 (METRICS_TOKEN) or 404: Prometheus scrapes
    the gunicorn master's API_METRICS_PORT, which needs PROMETHEUS_MULTIPROC_DIR (gunicorn.conf.py)."""
    (target,) = _scrape_targets()["api"]
    service, port = target.rsplit(":", 1)
    env = _environment(service)
    assert env.get("API_METRICS_PORT") == port, service
    assert env.get("PROMETHEUS_MULTIPROC_DIR") in _yaml(COMPOSE_FILE)["services"][service].get("tmpfs", [])
    api = next(job for job in _yaml(PROMETHEUS_FILE)["scrape_configs"] if job["job_name"] == "api")
    assert "authorization" not in api and "basic_auth" not in api, "the metrics port needs no credential"


PROCFILE = ROOT / "Procfile"


def _procfile_environment(tmp_path: Path) -> dict[str, dict[str, str]]:
    """Each Procfile entry run as a platform runs it (bash -c), with gunicorn and celery replaced
    by a stand-in that reports the metrics settings it was started with."""
    from bench.system import parse_procfile

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    report = (
        "#!/bin/sh\n"
        'echo "API_METRICS_PORT=$API_METRICS_PORT"\n'
        'echo "WORKER_METRICS_PORT=$WORKER_METRICS_PORT"\n'
        'echo "PROMETHEUS_MULTIPROC_DIR=$PROMETHEUS_MULTIPROC_DIR"\n'
        'dir="$PROMETHEUS_MULTIPROC_DIR"\n'
        'if [ -d "$dir" ] && [ -z "$(ls -A "$dir")" ]; then echo FRESH=1; fi\n'
    )
    for name in ("gunicorn", "celery"):
        (bin_dir / name).write_text(report)
        (bin_dir / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.endswith("METRICS_PORT") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    found = {}
    for name, command in parse_procfile(PROCFILE.read_text()).items():
        if not command.split("exec ")[-1].startswith(("gunicorn", "celery -A worker worker")):
            continue
        run = subprocess.run(
            ["bash", "-c", command], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT, check=True
        )
        found[name] = dict(line.split("=", 1) for line in run.stdout.splitlines() if "=" in line)
    return found


def test_a_procfile_deployment_serves_every_process_metrics(tmp_path: Path) -> None:
    """The Procfile ran gunicorn and the pools without API_METRICS_PORT / WORKER_METRICS_PORT or
    PROMETHEUS_MULTIPROC_DIR (only docker-compose set them): in production nothing of the API was
    scrapeable (its public /metrics refused) and no pool served metrics at all."""
    found = _procfile_environment(tmp_path)
    assert set(found) == {"web", "worker", "webhooks", "maintenance"}, found
    assert found["web"]["API_METRICS_PORT"] == _environment("web")["API_METRICS_PORT"], found["web"]
    ports = [found["web"]["API_METRICS_PORT"]] + [found[n]["WORKER_METRICS_PORT"] for n in found if n != "web"]
    assert all(port.isdigit() for port in ports), found
    from worker.backlog_exporter import DEFAULT_PORT

    assert len({*ports, str(DEFAULT_PORT)}) == len(ports) + 1, f"entries on one host would share a port: {found}"
    dirs = [env["PROMETHEUS_MULTIPROC_DIR"] for env in found.values()]
    assert all(env.get("FRESH") == "1" for env in found.values()), f"no fresh, empty multiprocess directory: {found}"
    assert len(set(dirs)) == len(dirs), "two processes would aggregate each other's metrics"


def test_the_documented_token_scrape_is_a_valid_api_job(tmp_path: Path) -> None:
    """prometheus.yml's alternative to the metrics port: the public port, the bearer token from a
    credentials file (never inline), and a config promtool accepts with it in place of the api job."""
    from tests.ops.servers import token_scrape_job

    job = token_scrape_job()
    assert job["job_name"] == "api"
    assert job["authorization"]["type"] == "Bearer" and "credentials" not in job["authorization"], job
    assert job["authorization"]["credentials_file"].startswith("/"), job
    (target,) = job["static_configs"][0]["targets"]
    service, port = target.rsplit(":", 1)
    assert f"{port}:{port}" in _yaml(COMPOSE_FILE)["services"][service]["ports"], "not the API's public port"
    promtool()
    token = tmp_path / "metrics_token"
    token.write_text("a-token")
    job["authorization"]["credentials_file"] = str(token)
    config = _yaml(PROMETHEUS_FILE)
    config["scrape_configs"] = [job if j["job_name"] == "api" else j for j in config["scrape_configs"]]
    config["rule_files"] = [str(ALERTS_FILE)]
    copy = tmp_path / "prometheus.yml"
    copy.write_text(yaml.safe_dump(config, sort_keys=False))
    run_promtool("check", "config", str(copy))


def test_workers_serve_metrics_on_the_scraped_port() -> None:
    """A worker only serves /metrics when WORKER_METRICS_PORT is set (worker/telemetry.py)."""
    for target in _scrape_targets()["worker"]:
        service, port = target.rsplit(":", 1)
        assert _environment(service).get("WORKER_METRICS_PORT") == port, service


def test_backlog_exporter_runs_apart_from_every_worker() -> None:
    """The backlog alerts must fire while settlement is stopped or hung: the gauges come from a
    process of their own, served on the scraped port, started without any worker or beat."""
    service = _yaml(COMPOSE_FILE)["services"]["backlog-exporter"]
    assert service["command"] == ["python", "-m", "worker.backlog_exporter"]
    (target,) = _scrape_targets()["backlog"]
    assert _environment("backlog-exporter").get("BACKLOG_EXPORTER_PORT") == target.rsplit(":", 1)[1]
    multiproc_dir = _environment("backlog-exporter").get("PROMETHEUS_MULTIPROC_DIR")
    assert multiproc_dir is None or multiproc_dir in service.get("tmpfs", []), "prometheus_client needs that directory"
    depends = set(service.get("depends_on") or {})
    assert not depends & {"worker", "webhook-worker", "beat"}, depends


def test_alerts_reach_alertmanager() -> None:
    """A firing alert leaves Prometheus for Alertmanager, which routes every severity to a receiver."""
    alerting = _yaml(PROMETHEUS_FILE).get("alerting") or {}
    targets = [t for am in alerting.get("alertmanagers", []) for s in am["static_configs"] for t in s["targets"]]
    assert targets == ["alertmanager:9093"], alerting
    compose = _yaml(COMPOSE_FILE)["services"]
    assert "alertmanager" in compose["alertmanager"]["image"]
    assert _mounts("alertmanager").get("/etc/alertmanager/alertmanager.yml") == ALERTMANAGER_FILE.resolve()
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in compose["alertmanager"]["command"]
    assert "alertmanager" in (compose["prometheus"].get("depends_on") or {})
    config = _yaml(ALERTMANAGER_FILE)
    receivers = {r["name"]: r for r in config["receivers"]}
    routes = {m for route in config["route"].get("routes", []) for m in route.get("matchers", [])}
    assert 'severity="critical"' in routes, "critical alerts have no route of their own"
    for name in {config["route"]["receiver"], *(r["receiver"] for r in config["route"].get("routes", []))}:
        integrations = [key for key in receivers[name] if key.endswith("_configs") and receivers[name][key]]
        assert integrations, f"receiver {name!r} sends nowhere"


def test_amtool_check_config() -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool is not on PATH (Debian: `apt-get install prometheus-alertmanager`, as .ci/run does)")
    result = subprocess.run(
        [amtool, "check-config", str(ALERTMANAGER_FILE)], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_queue_gets_its_own_heartbeat() -> None:
    """Beat sends a heartbeat task to each queue, labelled with it: each pool reports per queue."""
    from core.config import Settings
    from worker.app import create_celery, queues

    settings = Settings(settle_partitions=3)
    beats = {
        entry["args"][0]: entry["options"]["queue"]
        for entry in create_celery(settings, set_as_current=False).conf.beat_schedule.values()
        if entry["task"] == "worker.tasks.heartbeat"
    }
    assert beats == {queue: queue for queue in queues(settings)}
    assert set(beats) >= {"transfers.0", "transfers.1", "transfers.2", "webhooks"}


def test_settlement_and_webhooks_run_in_separate_worker_pools() -> None:
    """A slow partner endpoint must never hold the processes that settle transfers."""
    compose = _yaml(COMPOSE_FILE)["services"]
    worker = compose["worker"]["command"]
    assert "webhooks" in worker[worker.index("--exclude-queues") + 1].split(",")  # never the partners' queue
    assert "--queues" not in worker
    assert "webhooks" in compose["webhook-worker"]["command"]


def test_prometheus_config_and_rule_files_are_mounted() -> None:
    mounts = _mounts("prometheus")
    assert mounts.get("/etc/prometheus/prometheus.yml") == PROMETHEUS_FILE.resolve(), mounts
    rule_files = _yaml(PROMETHEUS_FILE).get("rule_files") or []
    assert rule_files, "prometheus.yml loads no rule files"
    unmounted = [path for path in rule_files if path not in mounts]
    assert not unmounted, f"rule_files not mounted into the prometheus service: {unmounted}"
    assert ALERTS_FILE.resolve() in {mounts[path] for path in rule_files}, "alerts.yml is not loaded"


def test_grafana_provisioning_is_mounted() -> None:
    mounts = _mounts("grafana")
    provisioning = ROOT / "ops" / "grafana" / "provisioning"
    assert mounts.get("/etc/grafana/provisioning/datasources") == (provisioning / "datasources").resolve()
    assert mounts.get("/etc/grafana/provisioning/dashboards") == (provisioning / "dashboards").resolve()
    (provider,) = _yaml(DASHBOARD_PROVIDERS_FILE)["providers"]
    dashboards_path = provider["options"]["path"]
    assert mounts.get(dashboards_path) == DASHBOARDS.resolve(), f"{dashboards_path} is not ops/grafana/dashboards"


def test_datasources_are_prometheus_and_jaeger() -> None:
    datasources = {ds["uid"]: ds for ds in _yaml(DATASOURCES_FILE)["datasources"]}
    assert datasources["prometheus"]["type"] == "prometheus"
    assert datasources["prometheus"]["url"] == "http://prometheus:9090"
    assert datasources["jaeger"]["type"] == "jaeger"
    assert datasources["jaeger"]["url"] == "http://jaeger:16686"


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_dashboard_datasources_are_provisioned(path: Path) -> None:
    provisioned = {(ds["uid"], ds["type"]) for ds in _yaml(DATASOURCES_FILE)["datasources"]}
    dashboard = json.loads(path.read_text())
    for panel in iter_panels(dashboard.get("panels", [])):
        refs = [panel.get("datasource"), *(target.get("datasource") for target in panel.get("targets", []))]
        for ref in refs:
            if ref is None:  # Grafana's default datasource
                continue
            assert isinstance(ref, dict), f"{path.name}: panel {panel.get('title')!r}: datasource by name: {ref!r}"
            assert (ref.get("uid"), ref.get("type")) in provisioned, (
                f"{path.name}: panel {panel.get('title')!r} uses a datasource that is not provisioned: {ref}"
            )


def test_transfers_dashboard() -> None:
    path = DASHBOARDS / "transfers.json"
    dashboard = json.loads(path.read_text())
    assert dashboard["uid"] == "transfers"
    assert dashboard["schemaVersion"] >= 36
    panels = list(iter_panels(dashboard["panels"]))
    assert {panel["type"] for panel in panels} <= {"timeseries", "stat"}
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for panel in panels:
        assert {"x", "y", "w", "h"} <= panel["gridPos"].keys(), panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), f"duplicate refIds in {panel['title']!r}"
    exprs = " ".join(target["expr"] for panel in panels for target in panel["targets"])
    assert "histogram_quantile(0.99, sum by (le) (rate(bank_transfer_accept_to_final_seconds_bucket" in exprs
    assert "time() - max by (queue) (bank_worker_heartbeat_timestamp_seconds)" in exprs


# --- Alert rules --------------------------------------------------------------------------------


def test_alert_rules_have_the_required_fields() -> None:
    document = _yaml(ALERTS_FILE)
    groups = {group["name"]: group for group in document["groups"]}
    assert "bank" in groups, f"no rule group 'bank' in {ALERTS_FILE.name}"
    alerts = {rule["alert"]: rule for rule in groups["bank"]["rules"] if "alert" in rule}
    missing = REQUIRED_ALERTS - alerts.keys()
    assert not missing, f"alerts missing from group 'bank': {sorted(missing)}"
    for name, rule in alerts.items():
        assert isinstance(rule.get("expr"), str), f"{name}: no expr"
        assert rule["expr"].strip(), f"{name}: empty expr"
        assert re.fullmatch(r"\d+[smh]", str(rule.get("for", ""))), f"{name}: no 'for' duration"
        assert rule.get("labels", {}).get("severity") in SEVERITIES, f"{name}: severity not in {SEVERITIES}"
        annotations = rule.get("annotations", {})
        for key in ("summary", "description"):
            assert str(annotations.get(key, "")).strip(), f"{name}: no annotations.{key}"


RUNBOOKS = ROOT / "ops" / "runbooks"


def test_every_alert_links_its_runbook() -> None:
    """On-call reads what the alert means, how to confirm it and what to do, in the repo."""
    for rule in rules():
        if "alert" not in rule:
            continue
        url = rule.get("annotations", {}).get("runbook_url", "")
        assert url.startswith("ops/runbooks/") and url.endswith(".md"), f"{rule['alert']}: runbook_url {url!r}"
        page = ROOT / url
        assert page.is_file(), f"{rule['alert']}: {url} is not in the repo"
        text = page.read_text()
        assert rule["alert"] in text, f"{url} does not name {rule['alert']}"
        for section in ("## What it means", "## How to confirm", "## What to do"):
            assert section in text, f"{url}: no {section!r} section"


def test_alert_names_are_unique() -> None:
    names = [rule["alert"] for rule in rules() if "alert" in rule]
    assert len(names) == len(set(names)), f"duplicate alert names: {names}"


# --- The metric names queried (tests/stack_metrics.py) -----------------------------------------


def test_metric_names_queried() -> None:
    names = metric_names_queried()
    assert names, "no dashboard panel or alert queries a bank_/flask_ metric"
    assert {"bank_transfers_settled_total", "bank_oldest_pending_transfer_age_seconds"} <= names
    assert not {name for name in names if name.endswith(("_bucket", "_sum", "_count"))}, names


def test_only_exported_metrics_are_queried() -> None:
    """Every name queried is one the API or the worker exports; a typo would be an empty panel."""
    exported = _exported_bank_metrics() | FLASK_METRICS
    stale = DASHBOARD_METRICS - exported
    assert not stale, f"DASHBOARD_METRICS lists metrics that core/observability/metrics.py lacks: {sorted(stale)}"
    unknown = metric_names_queried() - exported
    assert not unknown, f"queried but not exported by the API or the worker: {sorted(unknown)}"


def test_dashboard_covers_every_metric() -> None:
    queried = {name for expr in dashboard_exprs(DASHBOARDS / "transfers.json") for name in metric_names(expr)}
    missing = DASHBOARD_METRICS - queried
    assert not missing, f"no panel of the transfers dashboard shows: {sorted(missing)}"


# --- promtool ----------------------------------------------------------------------------------


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not on PATH (Debian: `apt-get install prometheus`, as .ci/run does when root)")
    return path


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([promtool(), *args], cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert result.returncode == 0, f"promtool {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def test_promtool_check_config(tmp_path: Path) -> None:
    """prometheus.yml as the container sees it, its rule_files pointed at the repo's copies."""
    promtool()
    config = _yaml(PROMETHEUS_FILE)
    mounts = _mounts("prometheus")
    unmounted = [path for path in config.get("rule_files", []) if path not in mounts]
    assert not unmounted, f"rule_files not mounted into the prometheus service: {unmounted}"
    config["rule_files"] = [str(mounts[path]) for path in config.get("rule_files", [])]
    copy = tmp_path / "prometheus.yml"
    copy.write_text(yaml.safe_dump(config, sort_keys=False))
    result = run_promtool("check", "config", str(copy))
    assert str(ALERTS_FILE.resolve()) in result.stdout + result.stderr, "promtool did not check alerts.yml"


def test_promtool_check_rules() -> None:
    promtool()
    result = run_promtool("check", "rules", str(ALERTS_FILE))
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout, result.stdout
