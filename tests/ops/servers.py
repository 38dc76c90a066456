"""Real Alertmanager and Prometheus servers (Debian's ``prometheus-alertmanager`` and
``prometheus``) started from test copies of the shipped ops/ files.

A copy changes only addresses (receiver URLs, scrape targets, the Alertmanager target, rule
file paths) and, where the test says so, divides every duration by a scale: the routing,
grouping, inhibition, rules and the ratios of the timings stay the shipped ones.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from devtools import processes
from tests.receiver import Receiver

ROOT = Path(__file__).resolve().parents[2]
ALERTMANAGER_FILE = ROOT / "ops" / "alertmanager" / "alertmanager.yml"
PROMETHEUS_FILE = ROOT / "ops" / "prometheus" / "prometheus.yml"
ALERTS_FILE = ROOT / "ops" / "prometheus" / "alerts.yml"
DURATION = re.compile(r"^(\d+)(ms|s|m|h|d)$")
UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(duration: str) -> float:
    match = DURATION.match(str(duration))
    assert match, duration
    return int(match.group(1)) * UNIT_SECONDS[match.group(2)]


def scaled(duration: str, scale: float) -> str:
    return f"{max(1, round(seconds(duration) * 1000 / scale))}ms"


def binary(*names: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip(
        f"{names[0]} is not installed (Debian: `apt-get install prometheus prometheus-alertmanager`, as .ci/run does)"
    )


def shipped_alertmanager() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(ALERTMANAGER_FILE.read_text())
    return config


def critical_route() -> dict[str, Any]:
    config = shipped_alertmanager()
    route: dict[str, Any] = next(r for r in config["route"]["routes"] if 'severity="critical"' in r["matchers"])
    return {**config["route"], **route}


def _scale_route(route: dict[str, Any], scale: float) -> None:
    for key in ("group_wait", "group_interval", "repeat_interval"):
        if key in route:
            route[key] = scaled(route[key], scale)
    for child in route.get("routes", []):
        _scale_route(child, scale)


def wait_ready(url: str, proc: processes.Proc, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert proc.popen.poll() is None, proc.log()[-3000:]
        assert time.monotonic() < deadline, f"{proc.name} did not start:\n{proc.log()[-3000:]}"
        time.sleep(0.1)


@dataclass
class Alertmanager:
    url: str
    address: str
    receiver: Receiver
    urls: dict[str, str]  # receiver name -> the URL its webhook posts to
    proc: processes.Proc

    def send(self, labels: dict[str, str], *, resolved: bool = False) -> None:
        """As Prometheus does: a firing alert is valid for a while, a resolved one ends now."""
        now = datetime.now(UTC)
        ends = now if resolved else now + timedelta(hours=1)
        alert = {"labels": labels, "annotations": {"summary": "test"}, "endsAt": ends.isoformat()}
        if not resolved:
            alert["startsAt"] = now.isoformat()
        response = httpx.post(f"{self.url}/api/v2/alerts", json=[alert], timeout=5)
        assert response.status_code == 200, response.text

    def notifications(self, receiver: str) -> list[tuple[float, dict[str, Any]]]:
        """(time.monotonic() received, webhook payload) of each notification to a receiver."""
        return [(r.at, json.loads(r.body)) for r in self.receiver.requests(self.urls[receiver])]

    def wait_for(
        self, receiver: str, found: Callable[[list[tuple[float, dict[str, Any]]]], bool], timeout: float
    ) -> list[tuple[float, dict[str, Any]]]:
        deadline = time.monotonic() + timeout
        while not found(notes := self.notifications(receiver)):
            assert time.monotonic() < deadline, f"{receiver}: not found in {timeout}s: {notes}"
            time.sleep(0.05)
        return notes

    def stop(self) -> None:
        self.proc.stop()
        self.receiver.close()


def start_alertmanager(tmp: Path, scale: float) -> Alertmanager:
    am = binary("prometheus-alertmanager", "alertmanager")
    receiver = Receiver()
    config = shipped_alertmanager()
    urls = {}
    for entry in config["receivers"]:
        urls[entry["name"]] = receiver.endpoint()
        for webhook in entry["webhook_configs"]:
            webhook["url"] = urls[entry["name"]]
    _scale_route(config["route"], scale)
    (tmp / "alertmanager.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    port = processes.free_port()
    proc = processes.spawn(
        "alertmanager",
        [
            am,
            f"--config.file={tmp / 'alertmanager.yml'}",
            f"--storage.path={tmp / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # a single instance: no gossip, no wait for peers
            "--log.level=warn",
        ],
        {},
        tmp,
        tmp,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{url}/-/ready", proc)
    except BaseException:
        proc.stop()
        receiver.close()
        raise
    return Alertmanager(url, f"127.0.0.1:{port}", receiver, urls, proc)


@dataclass
class Prometheus:
    url: str
    proc: processes.Proc

    def query(self, expr: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=5)
        assert response.status_code == 200, response.text
        result: list[dict[str, Any]] = response.json()["data"]["result"]
        return result


def token_scrape_job() -> dict[str, Any]:
    """The alternative api job that prometheus.yml documents in comments (the public port, with
    METRICS_TOKEN from a credentials file), as Prometheus would read it once uncommented."""
    lines = PROMETHEUS_FILE.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "#   - job_name: api")
    block = []
    for line in lines[start:]:
        if not line.startswith("  #   "):
            break
        block.append(line.removeprefix("  #   "))
    (job,) = yaml.safe_load("\n".join(block))
    return dict(job)


def start_prometheus(
    tmp: Path,
    targets: dict[str, list[str]],
    alertmanager: str,
    interval: str | None = None,
    rule_scale: float = 1,
    extra_jobs: list[dict[str, Any]] | None = None,
) -> Prometheus:
    """The shipped prometheus.yml with its addresses replaced (``targets``: job -> host:port) and
    the shipped rules with their `for` divided by ``rule_scale``; scrape and evaluate every
    ``interval`` if given, else at the shipped intervals. ``extra_jobs`` are scraped as well."""
    config = yaml.safe_load(PROMETHEUS_FILE.read_text())
    config["scrape_configs"] += extra_jobs or []
    if interval is not None:
        config["global"].update({"scrape_interval": interval, "evaluation_interval": interval})
        config["global"]["scrape_timeout"] = interval
    for job in config["scrape_configs"]:
        if job["job_name"] in targets:
            job["static_configs"] = [{"targets": targets[job["job_name"]]}]
    config["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [alertmanager]}]}]
    rules = yaml.safe_load(ALERTS_FILE.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule and rule_scale != 1:
                rule["for"] = scaled(rule["for"], rule_scale)
    (tmp / "alerts.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    config["rule_files"] = [str(tmp / "alerts.yml")]
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    port = processes.free_port()
    proc = processes.spawn(
        "prometheus",
        [
            binary("prometheus"),
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        {},
        tmp,
        tmp,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{url}/-/ready", proc)
    except BaseException:
        proc.stop()
        raise
    return Prometheus(url, proc)


class MetricsTarget:
    """A scrape target on a fixed 127.0.0.1 port serving ``/metrics`` from a callable (the text
    exposition format), for Prometheus rules about a process's series: ``stop()`` refuses
    connections as a killed process does, ``start()`` brings it back on the same address."""

    def __init__(self, render: Callable[[], str]) -> None:
        self.render = render
        self.port = processes.free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        render = self.render

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def gauges(*samples: tuple[str, dict[str, str], float]) -> str:
    """Text exposition of gauge samples (name, labels, value)."""
    lines = []
    for name, labels, value in samples:
        rendered = ",".join(f'{key}="{val}"' for key, val in labels.items())
        lines.append(f"{name}{{{rendered}}} {value!r}")
    return "\n".join(lines) + "\n"
