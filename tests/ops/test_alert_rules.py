"""``promtool test rules`` on ops/prometheus/alerts.yml: every alert fires (and stays quiet) as
designed, on series shaped like the faults it exists for.

RULE_TESTS evaluate every minute; SHIPPED_TIMING evaluates every 15 s, as prometheus.yml
scrapes and evaluates, with the fault at t=5m, so the time from the fault to the alert firing
is read straight off the scenario (test_time_to_page.py adds scrape and Alertmanager delays).
promtool compares annotations exactly, so the scenarios run against a copy of the rules without
annotations; test_stack_files.py's `promtool check rules` validates the annotation templates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.ops.test_stack_files import PROMETHEUS_FILE as ROOT_PROMETHEUS
from tests.ops.test_stack_files import REQUIRED_ALERTS, _yaml, promtool, run_promtool
from tests.stack_metrics import ALERTS_FILE


def _alert(name: str, at: str, *fired: dict[str, str]) -> dict[str, Any]:
    return {"eval_time": at, "alertname": name, "exp_alerts": [{"exp_labels": labels} for labels in fired]}


QUEUES = ("transfers", "transfers.0", "maintenance", "webhooks")

# Scenarios for `promtool test rules` (interval 1m: a value per minute from t=0).
HB = "bank_worker_heartbeat_timestamp_seconds"
SETTLED = "bank_transfers_settled_total"
ATTEMPTS = "bank_webhook_attempts_total"


def _heartbeat(queue: str, values: str) -> dict[str, str]:
    pool = "webhook-worker" if queue == "webhooks" else "worker"
    return {"series": f'{HB}{{job="worker", instance="{pool}:9808", queue="{queue}"}}', "values": values}


def _configured(*queues: str) -> list[dict[str, str]]:
    """The queues the deployment configures, as the backlog exporter exports them."""
    return [{"series": f'bank_queue_configured{{job="backlog", queue="{q}"}}', "values": "1x60"} for q in queues]


def _dependency(name: str, values: str) -> dict[str, str]:
    return {"series": f'bank_dependency_up{{job="backlog", dependency="{name}"}}', "values": values}


API = 'job="api", instance="web:9810", method="POST", url_rule="/api/v1/transfers"'


def _requests(status: str, values: str) -> dict[str, str]:
    return {"series": f'flask_http_request_duration_seconds_count{{{API}, status="{status}"}}', "values": values}


def _request_buckets(values: str) -> dict[str, str]:
    """Requests answered within the latency SLO's 300 ms (all of them answered 202)."""
    return {"series": f'flask_http_request_duration_seconds_bucket{{{API}, status="202", le="0.3"}}', "values": values}


def _settled(code: str, values: str) -> dict[str, str]:
    outcome = "COMPLETED" if code == "" else "FAILED"
    return {"series": f'{SETTLED}{{outcome="{outcome}", failure_code="{code}"}}', "values": values}


def _attempts(endpoint: str, result: str, values: str) -> dict[str, str]:
    return {"series": f'{ATTEMPTS}{{endpoint_id="{endpoint}", result="{result}"}}', "values": values}


# What the backlog exporter exports when it is healthy, for scenarios about something else.
BACKLOG_OK = [
    {"series": 'bank_backlog_measured_timestamp_seconds{job="backlog"}', "values": "0+60x60"},
    {"series": 'bank_queue_length_measured_timestamp_seconds{job="backlog"}', "values": "0+60x60"},
    {"series": 'bank_oldest_pending_transfer_age_seconds{job="backlog"}', "values": "0x60"},
    {"series": 'bank_queue_length{job="backlog", queue="transfers"}', "values": "0x60"},
]

RULE_TESTS: list[dict[str, Any]] = [
    {  # The worker target is down; so is the backlog exporter.
        "interval": "1m",
        "input_series": [
            {"series": 'up{job="worker", instance="worker:9808"}', "values": "0x10"},
            {"series": 'up{job="backlog", instance="backlog-exporter:9809"}', "values": "0x10"},
        ],
        "alert_rule_test": [
            _alert(
                "TargetDown",
                "2m",
                {"job": "backlog", "instance": "backlog-exporter:9809", "severity": "critical"},
                {"job": "worker", "instance": "worker:9808", "severity": "critical"},
            )
        ],
    },
    {  # The settlement pool hangs at t=5m: its queues' heartbeats stop; the webhooks pool's goes on.
        "interval": "1m",
        "input_series": [
            _heartbeat("transfers", "0+60x5 300x20"),
            _heartbeat("transfers.0", "0+60x5 300x20"),
            _heartbeat("webhooks", "0+60x25"),
        ],
        "alert_rule_test": [
            _alert("NoWorkerHeartbeat", "7m"),  # 120 s old: not above the threshold yet
            _alert("NoWorkerHeartbeat", "8m"),  # above since 8m, pending for 1m
            _alert(
                "NoWorkerHeartbeat",
                "9m",
                {"queue": "transfers", "severity": "critical"},
                {"queue": "transfers.0", "severity": "critical"},
            ),
        ],
    },
    {  # The webhooks pool hangs at t=5m: a hung pool of either kind alerts, for its queue only.
        "interval": "1m",
        "input_series": [_heartbeat("transfers", "0+60x25"), _heartbeat("webhooks", "0+60x5 300x20")],
        "alert_rule_test": [_alert("NoWorkerHeartbeat", "9m", {"queue": "webhooks", "severity": "critical"})],
    },
    {  # The webhooks pool is not running at all (it used to export no heartbeat: never noticed).
        "interval": "1m",
        "input_series": [_heartbeat("transfers", "0+60x10"), *_configured("transfers", "webhooks")],
        "alert_rule_test": [
            _alert("NoWorkerHeartbeat", "0m"),
            _alert("NoWorkerHeartbeat", "1m", {"queue": "webhooks", "severity": "critical"}),
        ],
    },
    {  # No heartbeat exported at all (no pool, or beat never ran): every configured queue.
        "interval": "1m",
        "input_series": [
            {"series": 'up{job="worker", instance="worker:9808"}', "values": "1x10"},
            *_configured("transfers", "transfers.0", "maintenance", "webhooks"),
        ],
        "alert_rule_test": [
            _alert("NoWorkerHeartbeat", "0m"),
            _alert(
                "NoWorkerHeartbeat",
                "2m",
                *({"queue": q, "severity": "critical"} for q in sorted(QUEUES)),
            ),
            _alert("TargetDown", "3m"),
        ],
    },
    {  # A pool serving some partitions (-Q transfers.1) vanishes: its queue alone, though no
        # rule names it (the exporter exports the queues the deployment configures).
        "interval": "1m",
        "input_series": [
            *(_heartbeat(q, "0+60x10") for q in ("transfers", "transfers.0", "maintenance", "webhooks")),
            _heartbeat("transfers.1", "0+60x3 stale"),
            *_configured("transfers", "transfers.0", "transfers.1", "maintenance", "webhooks"),
        ],
        "alert_rule_test": [
            _alert("NoWorkerHeartbeat", "3m"),
            _alert("NoWorkerHeartbeat", "5m", {"queue": "transfers.1", "severity": "critical"}),
        ],
    },
    {  # Two pools serve the transfers queue; at t=5m one is killed (its target down) and the other
        # hangs. The dead pool is TargetDown's page; the queue still alerts, as the live pool serving
        # it is hung too: a target down never hides another pool's failure. transfers.0, served by
        # the dead pool alone, is TargetDown's (one outage, one page).
        "interval": "1m",
        "input_series": [
            {"series": 'up{job="worker", instance="worker-a:9808"}', "values": "1x5 0x15"},
            {"series": 'up{job="worker", instance="worker-b:9808"}', "values": "1x20"},
            {"series": f'{HB}{{job="worker", instance="worker-a:9808", queue="transfers"}}', "values": "0+60x5 stale"},
            {
                "series": f'{HB}{{job="worker", instance="worker-a:9808", queue="transfers.0"}}',
                "values": "0+60x5 stale",
            },
            {"series": f'{HB}{{job="worker", instance="worker-b:9808", queue="transfers"}}', "values": "0+60x5 300x15"},
            *_configured("transfers", "transfers.0"),
        ],
        "alert_rule_test": [
            _alert("TargetDown", "7m", {"job": "worker", "instance": "worker-a:9808", "severity": "critical"}),
            _alert("NoWorkerHeartbeat", "7m"),  # transfers: 120 s old, not above yet
            _alert("NoWorkerHeartbeat", "9m", {"queue": "transfers", "severity": "critical"}),
            _alert("NoWorkerHeartbeat", "15m", {"queue": "transfers", "severity": "critical"}),
        ],
    },
    {  # The exporter is killed at t=6m and restarted at t=16m: TargetDown{job="backlog"} pages the
        # outage; its gauges' absence (BacklogNotMeasured) is the same outage and pages nobody,
        # through the restart too.
        "interval": "1m",
        "input_series": [
            {"series": 'up{job="backlog", instance="backlog-exporter:9809"}', "values": "1x5 0x9 1x10"},
            {
                "series": 'bank_backlog_measured_timestamp_seconds{job="backlog"}',
                "values": "0+60x5 stale _x9 960+60x10",
            },
            {
                "series": 'bank_queue_length_measured_timestamp_seconds{job="backlog"}',
                "values": "0+60x5 stale _x9 960+60x10",
            },
            {"series": 'bank_oldest_pending_transfer_age_seconds{job="backlog"}', "values": "0x5 stale _x9 0x10"},
            {"series": 'bank_queue_length{job="backlog", queue="transfers"}', "values": "0x5 stale _x9 0x10"},
        ],
        "alert_rule_test": [
            _alert("TargetDown", "7m", {"job": "backlog", "instance": "backlog-exporter:9809", "severity": "critical"}),
            *(_alert("BacklogNotMeasured", at) for at in ("8m", "12m", "15m", "16m", "18m", "20m")),
        ],
    },
    {  # Healthy pools: no heartbeat alert.
        "interval": "1m",
        "input_series": [
            _heartbeat("transfers", "0+60x20"),
            _heartbeat("webhooks", "0+60x20"),
            *_configured("transfers", "webhooks"),
        ],
        "alert_rule_test": [_alert("NoWorkerHeartbeat", "15m")],
    },
    {  # The oldest pending transfer ages by 60 s a minute (measured by the exporter).
        "interval": "1m",
        "input_series": [{"series": 'bank_oldest_pending_transfer_age_seconds{job="backlog"}', "values": "0+60x10"}],
        "alert_rule_test": [
            _alert("OldestPendingTransferTooOld", "5m"),
            _alert("OldestPendingTransferTooOld", "6m"),
            _alert("OldestPendingTransferTooOld", "7m", {"severity": "warning"}),
        ],
    },
    {  # One deep queue, one shallow one.
        "interval": "1m",
        "input_series": [
            {"series": 'bank_queue_length{job="backlog", queue="transfers"}', "values": "1500x10"},
            {"series": 'bank_queue_length{job="backlog", queue="webhooks"}', "values": "10x10"},
        ],
        "alert_rule_test": [
            _alert("QueueDepthHigh", "4m"),
            _alert("QueueDepthHigh", "5m", {"queue": "transfers", "severity": "warning"}),
        ],
    },
    {  # The exporter is healthy: the backlog is measured.
        "interval": "1m",
        "input_series": BACKLOG_OK,
        "alert_rule_test": [_alert("BacklogNotMeasured", "10m")],
    },
    {  # The broker is unreachable from t=3m: the queue depths stay as last measured (never a
        # fresh 0 that would look healthy), their "measured" time stops, and the exporter says why.
        "interval": "1m",
        "input_series": [
            BACKLOG_OK[0],
            {"series": 'bank_queue_length_measured_timestamp_seconds{job="backlog"}', "values": "0+60x3 180x10"},
            *BACKLOG_OK[2:],
            {"series": 'bank_queue_length{job="backlog", queue="transfers.0"}', "values": "1500x13"},
            _dependency("broker", "1x3 0x10"),
            _dependency("postgres", "1x13"),
        ],
        "alert_rule_test": [
            _alert("DependencyDown", "3m"),
            _alert("DependencyDown", "5m", {"dependency": "broker", "severity": "critical"}),
            _alert("BacklogNotMeasured", "4m"),  # 60 s old: not above
            _alert("BacklogNotMeasured", "7m", {"severity": "critical"}),
            # The last depth measured stays: the deep queue still alerts during the outage.
            _alert("QueueDepthHigh", "8m", {"queue": "transfers.0", "severity": "warning"}),
        ],
    },
    {  # Postgres is unreachable from t=3m.
        "interval": "1m",
        "input_series": [_dependency("postgres", "1x3 0x10"), _dependency("broker", "1x13")],
        "alert_rule_test": [
            _alert("DependencyDown", "4m"),  # pending for 30 s
            _alert("DependencyDown", "5m", {"dependency": "postgres", "severity": "critical"}),
            _alert("DependencyDown", "12m", {"dependency": "postgres", "severity": "critical"}),
        ],
    },
    {  # The exporter's Postgres measurement stops at t=3m (its gauges stay, frozen).
        "interval": "1m",
        "input_series": [
            {"series": 'bank_backlog_measured_timestamp_seconds{job="backlog"}', "values": "0+60x3 180x10"},
            *BACKLOG_OK[1:],
        ],
        "alert_rule_test": [
            _alert("BacklogNotMeasured", "4m"),  # 60 s old: not above
            _alert("BacklogNotMeasured", "6m"),  # above since 5m, pending
            _alert("BacklogNotMeasured", "7m", {"severity": "critical"}),
        ],
    },
    {  # No exporter at all: the backlog gauges are absent, so their alerts could never fire.
        "interval": "1m",
        "input_series": [_heartbeat("transfers", "0+60x10")],
        "alert_rule_test": [
            _alert("BacklogNotMeasured", "1m"),
            _alert("BacklogNotMeasured", "3m", {"severity": "critical"}),
        ],
    },
    {  # 40% of 10 settlements a minute are declined: business, charted, never paged.
        "interval": "1m",
        "input_series": [
            _settled("", "0+6x30"),
            _settled("INSUFFICIENT_FUNDS", "0+3x30"),
            _settled("ACCOUNT_INACTIVE", "0+1x30"),
            _settled("INTERNAL_ERROR", "0x30"),
        ],
        "alert_rule_test": [_alert("SettleErrorRateHigh", "10m"), _alert("SettleErrorRateHigh", "20m")],
    },
    {  # 2 of 150 settlements a minute fail for a system reason (INTERNAL_ERROR): paged.
        "interval": "1m",
        "input_series": [
            _settled("", "0+98x30"),
            _settled("INSUFFICIENT_FUNDS", "0+50x30"),
            _settled("INTERNAL_ERROR", "0+2x30"),
        ],
        "alert_rule_test": [
            _alert("SettleErrorRateHigh", "2m"),  # above since 1m, pending
            _alert("SettleErrorRateHigh", "5m", {"severity": "critical"}),
        ],
    },
    {  # A failure code added later is a system failure too, unless it is a known decline.
        "interval": "1m",
        "input_series": [_settled("", "0+10x30"), _settled("SOMETHING_NEW", "0+1x30")],
        "alert_rule_test": [_alert("SettleErrorRateHigh", "5m", {"severity": "critical"})],
    },
    {  # 1 system failure in 200 a minute (0.5%): under the threshold.
        "interval": "1m",
        "input_series": [_settled("", "0+199x30"), _settled("INTERNAL_ERROR", "0+1x30")],
        "alert_rule_test": [_alert("SettleErrorRateHigh", "20m")],
    },
    {  # Endpoint A's receiver is dead: every attempt fails. B is fine. Only A alerts, in minutes.
        "interval": "1m",
        "input_series": [
            _attempts("A", "error", "0+2x30"),
            _attempts("B", "ok", "0+5x30"),
            _attempts("B", "error", "0x30"),
        ],
        "alert_rule_test": [
            _alert("WebhookFailureRateHigh", "5m"),  # pending: for 10m
            _alert("WebhookFailureRateHigh", "15m", {"endpoint_id": "A", "severity": "warning"}),
        ],
    },
    {  # One timeout among many successes, and a single failure on a quiet endpoint: no alert.
        "interval": "1m",
        "input_series": [
            _attempts("A", "ok", "0+5x30"),
            _attempts("A", "error", "0 1x30"),
            _attempts("C", "error", "0 1x30"),
        ],
        "alert_rule_test": [_alert("WebhookFailureRateHigh", "20m")],
    },
    {  # No webhook traffic at all: 0/0 is no alert.
        "interval": "1m",
        "input_series": [_attempts("A", result, "0x30") for result in ("ok", "error")],
        "alert_rule_test": [_alert("WebhookFailureRateHigh", "20m")],
    },
    {  # An event waits: its age grows by 60 s a minute (a receiver retried rarely, or no pool).
        "interval": "1m",
        "input_series": [{"series": 'bank_webhook_oldest_undelivered_age_seconds{job="backlog"}', "values": "0+60x40"}],
        "alert_rule_test": [
            _alert("WebhookDeliveryLagHigh", "30m"),  # 1800 s: not above
            _alert("WebhookDeliveryLagHigh", "35m"),  # above since 31m, pending
            _alert("WebhookDeliveryLagHigh", "36m", {"severity": "warning"}),
        ],
    },
    {  # The sealer stops at t=3m: the oldest unsealed row ages by 60 s a minute.
        "interval": "1m",
        "input_series": [{"series": 'bank_audit_seal_lag_seconds{job="backlog"}', "values": "1 1 1 0+60x10"}],
        "alert_rule_test": [
            _alert("AuditSealLagHigh", "3m"),  # 0 s
            _alert("AuditSealLagHigh", "5m"),  # above since 4m, pending
            _alert("AuditSealLagHigh", "6m", {"severity": "warning"}),  # above for 2m
        ],
    },
    {  # Endpoint A answered for 30 minutes, then its receiver dies: every attempt fails. Named
        # at 33m (3 min); the 15-minute ratio (WebhookFailureRateHigh) would take about 15.
        "interval": "1m",
        "input_series": [
            _attempts("A", "ok", "0+6x30 180x15"),
            _attempts("A", "error", "0x30 6+6x15"),
            _attempts("B", "ok", "0+6x45"),
            _attempts("B", "error", "0x45"),
            # D is quiet, an event a minute, and dies at the same time: named as soon.
            _attempts("D", "ok", "0+1x30 30x15"),
            _attempts("D", "error", "0x30 1+1x15"),
        ],
        "alert_rule_test": [
            _alert("WebhookEndpointDown", "30m"),
            _alert("WebhookEndpointDown", "32m"),  # no success for 2 min: pending
            _alert(
                "WebhookEndpointDown",
                "33m",
                {"endpoint_id": "A", "severity": "warning"},
                {"endpoint_id": "D", "severity": "warning"},
            ),
            _alert("WebhookFailureRateHigh", "35m"),
        ],
    },
    {  # A flaky endpoint (some attempts succeed) and a quiet one (a single failure): not dead.
        "interval": "1m",
        "input_series": [
            _attempts("A", "ok", "0+1x30"),
            _attempts("A", "error", "0+5x30"),
            _attempts("C", "ok", "0x30"),
            _attempts("C", "error", "0 1x30"),
        ],
        "alert_rule_test": [_alert("WebhookEndpointDown", "20m")],
    },
    {  # A transfer could not be settled (a non-transient error): paged at once, for 10 minutes.
        "interval": "1m",
        "input_series": [{"series": 'bank_settle_poisoned_total{job="worker"}', "values": "0x5 1x20"}],
        "alert_rule_test": [
            _alert("SettlementInternalError", "5m"),
            _alert("SettlementInternalError", "6m", {"severity": "critical"}),
            _alert("SettlementInternalError", "15m", {"severity": "critical"}),
            _alert("SettlementInternalError", "17m"),  # out of the 10-minute window
        ],
    },
    {  # The sweeper parks two transfers at t=5m.
        "interval": "1m",
        "input_series": [{"series": 'bank_parked_transfers{job="backlog"}', "values": "0x5 2x10"}],
        "alert_rule_test": [
            _alert("TransfersParked", "5m"),
            _alert("TransfersParked", "6m"),  # pending for 1m
            _alert("TransfersParked", "7m", {"severity": "critical"}),
        ],
    },
    {  # Beat has never run against this Redis (no tick recorded) while Redis answers: named.
        # With Redis down the tick cannot be read, and DependencyDown names Redis instead.
        "interval": "1m",
        "input_series": [_dependency("redis", "1x10")],
        "alert_rule_test": [
            _alert("SchedulerDown", "0m"),
            _alert("SchedulerDown", "1m", {"severity": "critical"}),
        ],
    },
    {
        "interval": "1m",
        "input_series": [_dependency("redis", "0x10")],
        "alert_rule_test": [_alert("SchedulerDown", "5m")],
    },
    {  # POST /transfers answers 5xx from t=60m, after an hour of 10 requests a second: paged.
        "interval": "1m",
        "input_series": [
            _requests("202", "0+600x60 36000x15"),
            _requests("503", "0x60 600+600x15"),
            _request_buckets("0+600x60 36000x15"),
            {"series": 'bank_transfers_accepted_total{job="api", kind="TRANSFER"}', "values": "0+600x60 36000x15"},
        ],
        "alert_rule_test": [
            _alert("ApiErrorBudgetFastBurn", "60m"),
            # The recording rules are another group: the alert may see them one evaluation late.
            _alert("ApiErrorBudgetFastBurn", "62m", {"severity": "critical"}),
            _alert("ApiTransfersNotAccepted", "66m"),  # none accepted in 5 min: pending for 5m
            _alert("ApiTransfersNotAccepted", "71m", {"severity": "warning"}),
        ],
    },
    {  # 0.05 % of requests fail (within the 0.1 % budget), and a lone 503 on a quiet API: no page.
        "interval": "1m",
        "input_series": [
            _requests("202", "0+1999x120"),
            _requests("500", "0+1x120"),
            _request_buckets("0+2000x120"),
        ],
        "alert_rule_test": [
            _alert("ApiErrorBudgetFastBurn", "90m"),
            _alert("ApiErrorBudgetSlowBurn", "120m"),
            _alert("ApiLatencyBudgetBurn", "120m"),
        ],
    },
    {  # A quiet API (a request a minute) answers one 503: not a page.
        "interval": "1m",
        "input_series": [_requests("202", "0+1x60"), _requests("503", "0x30 1x30"), _request_buckets("0+1x60")],
        "alert_rule_test": [_alert("ApiErrorBudgetFastBurn", "31m"), _alert("ApiErrorBudgetFastBurn", "33m")],
    },
    {  # 0.5 % fail for a day (5x the budget's rate): a ticket, not a page.
        "interval": "10m",
        "input_series": [
            _requests("202", "0+5970x150"),
            _requests("500", "0+30x150"),
            _request_buckets("0+6000x150"),
        ],
        "alert_rule_test": [
            _alert("ApiErrorBudgetFastBurn", "1d"),
            _alert("ApiErrorBudgetSlowBurn", "1d", {"severity": "warning"}),
        ],
    },
    {  # A fifth of POST /transfers takes over 300 ms (the SLO allows 1 %): a ticket.
        "interval": "1m",
        "input_series": [
            _requests("202", "0+600x70"),
            _request_buckets("0+480x70"),
        ],
        "alert_rule_test": [
            _alert("ApiLatencyBudgetBurn", "3m"),
            _alert("ApiLatencyBudgetBurn", "10m", {"severity": "warning"}),
        ],
    },
    {  # Steady state: every signal healthy for an hour, nothing fires.
        "interval": "1m",
        "input_series": [
            *(
                {"series": f'up{{job="{job}", instance="{job}:1"}}', "values": "1x60"}
                for job in ("api", "worker", "backlog")
            ),
            *(_heartbeat(q, "0+60x60") for q in ("transfers", "transfers.0", "maintenance", "webhooks")),
            *_configured("transfers", "transfers.0", "maintenance", "webhooks"),
            *(_dependency(name, "1x60") for name in ("postgres", "broker", "redis")),
            {"series": 'bank_scheduler_last_tick_timestamp_seconds{job="backlog"}', "values": "-45+60x60"},
            *BACKLOG_OK,
            {"series": 'bank_parked_transfers{job="backlog"}', "values": "0x60"},
            {"series": 'bank_settle_poisoned_total{job="worker"}', "values": "0x60"},
            _settled("", "0+100x60"),
            _settled("INSUFFICIENT_FUNDS", "0+5x60"),
            _attempts("A", "ok", "0+6x60"),
            _attempts("A", "error", "0x60"),
            _requests("202", "0+600x60"),
            _request_buckets("0+600x60"),
            {"series": 'bank_transfers_accepted_total{kind="TRANSFER"}', "values": "0+600x60"},
        ],
        "alert_rule_test": [_alert(name, at) for name in sorted(REQUIRED_ALERTS) for at in ("10m", "59m")],
    },
]

FAULT = 300  # seconds: every SHIPPED_TIMING scenario breaks at t=5m, after 20 healthy 15 s ticks


def _s(seconds: int) -> str:
    return f"{seconds}s"


SHIPPED_TIMING: list[dict[str, Any]] = [
    {  # The whole settlement pool is killed: its target is down and its heartbeats vanish at once.
        # One page, TargetDown: the queues it served are that outage (they paged a second time
        # at +75 s). Restarted at +315 s (scraped up at +330 s), its first heartbeat at +345 s:
        # the recovery pages nobody either.
        "interval": "15s",
        "input_series": [
            {"series": 'up{job="worker", instance="worker:9808"}', "values": "1x20 0x20 1x20"},
            *(_heartbeat(q, "0+15x20 stale _x21 645+15x20") for q in QUEUES if q != "webhooks"),
            _heartbeat("webhooks", "0+15x60"),
            *_configured(*QUEUES),
        ],
        "alert_rule_test": [
            _alert("TargetDown", _s(FAULT + 15 + 15)),  # down since the scrape at +15 s: pending
            _alert("TargetDown", _s(FAULT + 45), {"job": "worker", "instance": "worker:9808", "severity": "critical"}),
            *(_alert("NoWorkerHeartbeat", _s(FAULT + t)) for t in (75, 90, 180, 300, 330, 345, 420, 480, 600)),
            _alert("TargetDown", _s(FAULT + 345)),
        ],
    },
    {  # Beat is killed: its recorded tick (seen up to 45 s late) and every heartbeat freeze at once.
        "interval": "15s",
        "input_series": [
            {"series": 'bank_scheduler_last_tick_timestamp_seconds{job="backlog"}', "values": "-45+15x23 300x20"},
            *(_heartbeat(q, "-30+15x22 300x20") for q in QUEUES),
            *_configured(*QUEUES),
            _dependency("redis", "1x43"),
        ],
        "alert_rule_test": [
            _alert("SchedulerDown", _s(FAULT + 60)),  # 60 s old: not above
            _alert("SchedulerDown", _s(FAULT + 75)),  # above: pending for 15 s
            _alert("SchedulerDown", _s(FAULT + 90), {"severity": "critical"}),
            _alert("NoWorkerHeartbeat", _s(FAULT + 90)),  # later, and inhibited by SchedulerDown
        ],
    },
    {  # The broker is down for 3 minutes (t=5m to 8m): beat cannot publish (its tick freezes) and no
        # pool gets a heartbeat, then both resume some seconds after the broker is back. One page,
        # DependencyDown{broker}: SchedulerDown and NoWorkerHeartbeat never fire, so none pages when
        # DependencyDown resolves (an Alertmanager inhibition ends with it, before beat's first tick).
        "interval": "15s",
        "input_series": [
            _dependency("broker", "1x20 0x11 1x20"),
            _dependency("redis", "1x45"),
            {
                "series": 'bank_scheduler_last_tick_timestamp_seconds{job="backlog"}',
                "values": "-45+15x23 300x12 510+15x20",
            },
            *(_heartbeat(q, "-30+15x22 300x14 540+15x20") for q in QUEUES),
            *_configured(*QUEUES),
        ],
        "alert_rule_test": [
            _alert("DependencyDown", _s(FAULT + 45), {"dependency": "broker", "severity": "critical"}),
            _alert("DependencyDown", _s(FAULT + 210)),
            *(_alert("SchedulerDown", _s(FAULT + t)) for t in (90, 180, 210, 225, 240, 300)),
            *(_alert("NoWorkerHeartbeat", _s(FAULT + t)) for t in (180, 210, 240, 255, 300, 360)),
        ],
    },
    {  # Postgres stops answering: the exporter's next measurement (within 15 s) reports it.
        "interval": "15s",
        "input_series": [_dependency("postgres", "1x20 0x20"), _dependency("broker", "1x40")],
        "alert_rule_test": [
            _alert("DependencyDown", _s(FAULT + 30)),
            _alert("DependencyDown", _s(FAULT + 45), {"dependency": "postgres", "severity": "critical"}),
        ],
    },
]


def _rules_without_annotations(tmp_path: Path) -> Path:
    document = _yaml(ALERTS_FILE)
    for group in document["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    copy = tmp_path / "alerts.yml"
    copy.write_text(yaml.safe_dump(document, sort_keys=False))
    return copy


def _run(tmp_path: Path, name: str, evaluation_interval: str, tests: list[dict[str, Any]]) -> None:
    spec = {"rule_files": [str(_rules_without_annotations(tmp_path))], "evaluation_interval": evaluation_interval}
    spec_file = tmp_path / name
    spec_file.write_text(yaml.safe_dump({**spec, "tests": tests}, sort_keys=False))
    run_promtool("test", "rules", str(spec_file))


def test_every_alert_has_a_scenario() -> None:
    tested = {case["alertname"] for scenario in RULE_TESTS + SHIPPED_TIMING for case in scenario["alert_rule_test"]}
    fired = {
        case["alertname"]
        for scenario in RULE_TESTS + SHIPPED_TIMING
        for case in scenario["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert tested >= REQUIRED_ALERTS, f"no scenario for {sorted(REQUIRED_ALERTS - tested)}"
    assert fired >= REQUIRED_ALERTS, f"no scenario fires {sorted(REQUIRED_ALERTS - fired)}"


def test_promtool_alert_scenarios(tmp_path: Path) -> None:
    """Thresholds, `for` durations and labels, a value a minute."""
    promtool()
    _run(tmp_path, "alerts_test.yml", "1m", RULE_TESTS)


def test_promtool_shipped_timing(tmp_path: Path) -> None:
    """The faults on-call must hear of within 2 minutes, at prometheus.yml's 15 s evaluation."""
    promtool()
    config = _yaml(ROOT_PROMETHEUS)["global"]
    assert config["evaluation_interval"] == config["scrape_interval"] == "15s", config
    _run(tmp_path, "timing_test.yml", "15s", SHIPPED_TIMING)
