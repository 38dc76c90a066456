"""The promises of README "Operations", computed from the shipped files: for each fault, the worst
case from the fault to the notification, and from the recovery to its announcement.

A live run at the shipped intervals takes minutes per fault, so the worst case is added up
from the parts, each read from the file that sets it: the scrape and evaluation intervals and
scrape timeout (prometheus.yml), the rule's threshold and `for` (alerts.yml), group_wait and
group_interval (alertmanager.yml), how often beat and the exporter tick and how long the
exporter waits on a dependency (Settings, worker/backlog_exporter.py). A firing alert is
evaluated on a grid: once its condition holds at an evaluation, it fires ceil(for / interval)
evaluations later. promtool checks the rules' part at 15 s (test_alert_rules.py SHIPPED_TIMING),
a real Alertmanager the notification's part (test_alertmanager.py).
"""

from __future__ import annotations

import math
import re
from functools import cache
from typing import Any

import pytest
import yaml

from tests.ops.test_stack_files import ALERTMANAGER_FILE, PROMETHEUS_FILE
from tests.stack_metrics import rules

PAGE_WITHIN = 120  # seconds from the fault to the page
ENDPOINT_NAMED_WITHIN = 300  # a dead webhook endpoint, named to the team
RECOVERY_WITHIN = 120  # seconds from the recovery to its announcement
UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def seconds(duration: str | int | None, default: float = 0) -> float:
    if duration is None:
        return default
    match = re.fullmatch(r"(\d+)(ms|s|m|h)", str(duration))
    assert match, duration
    return int(match.group(1)) * UNITS[match.group(2)]


@cache
def alert(name: str) -> dict[str, Any]:
    return next(rule for rule in rules() if rule.get("alert") == name)


def prometheus() -> tuple[float, float, float]:
    config = yaml.safe_load(PROMETHEUS_FILE.read_text())["global"]
    scrape = seconds(config.get("scrape_interval"), 60)
    return scrape, seconds(config.get("evaluation_interval"), 60), seconds(config.get("scrape_timeout"), 10)


def routes() -> tuple[dict[str, Any], dict[str, Any]]:
    """(critical, warning) routes as Alertmanager sees them: the child inherits what it does not set."""
    route = yaml.safe_load(ALERTMANAGER_FILE.read_text())["route"]
    critical = next(r for r in route["routes"] if 'severity="critical"' in r["matchers"])
    return {**route, **critical}, route


def fires_after(name: str) -> float:
    """From the first evaluation at which the condition holds to the evaluation that fires."""
    _, evaluation, _ = prometheus()
    return math.ceil(seconds(alert(name).get("for", "0s")) / evaluation) * evaluation


def threshold(name: str) -> float:
    match = re.search(r"> (\d+)\s*$", alert(name)["expr"], flags=re.MULTILINE)  # the first comparison
    assert match, alert(name)["expr"]
    return float(match.group(1))


def refresh() -> float:
    """Beat's heartbeat period and the exporter's measurement period."""
    from core.config import Settings

    return Settings().metrics_refresh_seconds


def exporter_waits() -> float:
    """One measurement round when a dependency hangs: each of the three waits at most its timeout."""
    from worker.backlog_exporter import CONNECT_TIMEOUT_SECONDS, DEPENDENCIES

    return len(DEPENDENCIES) * CONNECT_TIMEOUT_SECONDS


def pages() -> dict[str, tuple[str, float]]:
    """fault -> (alert, worst-case seconds from the fault to the page)."""
    scrape, evaluation, timeout = prometheus()
    critical, _ = routes()
    wait = seconds(critical["group_wait"])
    # A killed process refuses the next scrape; a frozen one times it out.
    target_down = scrape + timeout + evaluation + fires_after("TargetDown") + wait
    return {
        "settlement pool killed or frozen": ("TargetDown", target_down),
        "API killed or frozen": ("TargetDown", target_down),
        # Beat's last tick is frozen at the fault at worst: the age passes the threshold on time.
        "beat (the scheduler) down": (
            "SchedulerDown",
            threshold("SchedulerDown") + evaluation + fires_after("SchedulerDown") + wait,
        ),
        "Postgres, the broker or Redis unreachable": (
            "DependencyDown",
            refresh() + exporter_waits() + scrape + evaluation + fires_after("DependencyDown") + wait,
        ),
        # Every POST /transfers answers 5xx after an hour of traffic: the 1 h window passes 14.4x
        # the budget (1.44 %) after 1.44 % of an hour; the recording rule adds an evaluation.
        "API answering 5xx": (
            "ApiErrorBudgetFastBurn",
            0.0144 * 3600 + scrape + 2 * evaluation + fires_after("ApiErrorBudgetFastBurn") + wait,
        ),
    }


def test_every_fault_pages_within_two_minutes() -> None:
    late = {fault: worst for fault, (_, worst) in pages().items() if worst > PAGE_WITHIN}
    assert not late, f"worst case over {PAGE_WITHIN} s: {late}"
    for _, (name, _) in pages().items():
        assert alert(name)["labels"]["severity"] == "critical", f"{name} does not page"


def test_a_repeat_outage_pages_within_two_minutes() -> None:
    """The group may still exist (Alertmanager removes an empty group only at its maintenance):
    the second outage then waits for the group's next tick instead of group_wait. (A second 5xx
    burst is detected at once: the burn windows still hold the first one's errors.)"""
    critical, _ = routes()
    interval, wait = seconds(critical["group_interval"]), seconds(critical["group_wait"])
    late = {
        fault: worst - wait + interval
        for fault, (name, worst) in pages().items()
        if worst - wait + interval > PAGE_WITHIN and name != "ApiErrorBudgetFastBurn"
    }
    assert not late, f"a repeat outage waits over {PAGE_WITHIN} s: {late}"


def test_every_recovery_is_announced_within_two_minutes() -> None:
    """Prometheus sends a resolved alert at the evaluation that sees the recovery; Alertmanager
    announces it at the group's next tick."""
    scrape, evaluation, _ = prometheus()
    critical, warning = routes()
    announced = {
        "a target back": scrape + evaluation + seconds(critical["group_interval"]),
        # Beat publishes its due heartbeats as it starts; the exporter reads the tick.
        "beat back": refresh() + scrape + evaluation + seconds(critical["group_interval"]),
        "a dependency back": refresh() + scrape + evaluation + seconds(critical["group_interval"]),
        "a webhook endpoint back": scrape + evaluation + seconds(warning["group_interval"]),
    }
    late = {recovery: worst for recovery, worst in announced.items() if worst > RECOVERY_WITHIN}
    assert not late, f"announced after over {RECOVERY_WITHIN} s: {late}"


def test_a_dead_webhook_endpoint_is_named_within_five_minutes() -> None:
    """Its last success leaves the window, then `for`; the attempt that fails may wait the
    whole HTTP timeout first."""
    from core.config import Settings

    _, evaluation, _ = prometheus()
    _, warning = routes()
    window = seconds(re.search(r"\[(\d+[smh])\]", alert("WebhookEndpointDown")["expr"]).group(1))  # type: ignore[union-attr]
    worst = (
        Settings().webhook_timeout_seconds
        + window
        + evaluation
        + fires_after("WebhookEndpointDown")
        + seconds(warning["group_wait"])
    )
    assert worst <= ENDPOINT_NAMED_WITHIN, worst
    assert "endpoint_id" in alert("WebhookEndpointDown")["expr"]


@pytest.mark.parametrize("grouped_by", ["job", "instance", "queue", "endpoint_id", "dependency"])
def test_alerts_are_grouped_by_what_failed(grouped_by: str) -> None:
    """One target's (queue's, endpoint's, dependency's) standing alert never holds another's page."""
    critical, warning = routes()
    assert grouped_by in critical["group_by"] and grouped_by in warning["group_by"]


def test_a_live_beat_never_looks_dead() -> None:
    """A live beat's tick, as evaluated, is at most one beat period, one exporter period and one
    scrape old (plus the exporter's own measurement): under SchedulerDown's threshold."""
    scrape, _, _ = prometheus()
    steady = refresh() + refresh() + scrape
    assert steady + 10 <= threshold("SchedulerDown"), (steady, threshold("SchedulerDown"))
