"""Which process exports which gauge: none exports a value it does not measure.

A placeholder (an unlabelled gauge at 0 in the API or a pool that never measured it) hid the
real heartbeat behind "56 years" and made the ``absent()`` branches of the alerts unreachable.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from core.observability import metrics
from core.observability.backlog import Backlog
from core.observability.backlog_gauges import BacklogGauges

BACKLOG_GAUGES = (
    "bank_queue_length",
    "bank_pending_transfers",
    "bank_oldest_pending_transfer_age_seconds",
    "bank_outbox_backlog",
    "bank_webhook_oldest_undelivered_age_seconds",
    "bank_audit_unsealed_rows",
    "bank_audit_seal_lag_seconds",
    "bank_parked_transfers",
    "bank_backlog_measured_timestamp_seconds",
)


def _samples(registry: CollectorRegistry) -> dict[str, list[str]]:
    lines = [line for line in generate_latest(registry).decode().splitlines() if not line.startswith("#")]
    names: dict[str, list[str]] = {}
    for line in lines:
        names.setdefault(line.split("{")[0].split(" ")[0], []).append(line)
    return names


def test_the_shared_metrics_export_no_placeholder_heartbeat_nor_backlog() -> None:
    """What the API and every pool export before measuring anything: no heartbeat, no backlog."""
    metrics.touch_known_labels()
    exported = _samples(REGISTRY)
    # Only heartbeats some test ran in this process may be here, each labelled with its queue.
    heartbeats = exported.get("bank_worker_heartbeat_timestamp_seconds", [])
    assert all('{queue="' in line for line in heartbeats), heartbeats
    assert not set(BACKLOG_GAUGES) & exported.keys()


def test_a_heartbeat_is_labelled_by_the_queue_it_came_from() -> None:
    from worker.heartbeat import heartbeat

    heartbeat("webhooks")  # run in this process, as a pool's child would
    lines = _samples(REGISTRY)["bank_worker_heartbeat_timestamp_seconds"]
    assert any('queue="webhooks"' in line for line in lines), lines
    assert all("queue=" in line for line in lines), lines


def test_the_backlog_exporter_exports_every_backlog_gauge() -> None:
    registry = CollectorRegistry()
    gauges = BacklogGauges(registry)
    gauges.set_backlog(Backlog(3, 94.0, 1, 0, 0.0, 12.5, 2))
    gauges.set_queue_depths({"transfers": 0, "transfers.0": 181, "webhooks": 2})
    exported = _samples(registry)
    assert set(BACKLOG_GAUGES) <= exported.keys()
    assert exported["bank_oldest_pending_transfer_age_seconds"] == ["bank_oldest_pending_transfer_age_seconds 94.0"]
    assert exported["bank_parked_transfers"] == ["bank_parked_transfers 2.0"]  # not the sweeper's any more
    assert 'bank_queue_length{queue="transfers.0"} 181.0' in exported["bank_queue_length"]


def test_an_endpoints_error_series_exists_from_its_first_attempt() -> None:
    """increase() does not count a new series' first value: created at 0 with the endpoint's first
    (successful) attempt, its first failure is an increase WebhookEndpointDown sees."""
    endpoint = "endpoint-first-attempt"
    metrics.count_webhook_attempt(endpoint, ok=True)
    lines = _samples(REGISTRY)["bank_webhook_attempts_total"]
    assert f'bank_webhook_attempts_total{{endpoint_id="{endpoint}",result="error"}} 0.0' in lines, lines
    assert f'bank_webhook_attempts_total{{endpoint_id="{endpoint}",result="ok"}} 1.0' in lines, lines
