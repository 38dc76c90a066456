"""The backlog gauges, exported only by the backlog exporter (worker/backlog_exporter.py).

They live on a registry of their own rather than in metrics.py: every process imports
metrics.py, and an unlabelled gauge there is exported as 0 by processes that never measure it
(the API, the workers), which hid the real value and made ``absent()`` unreachable.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from core.observability.backlog import Backlog
from core.observability.money import MoneyTotals


class BacklogGauges:
    def __init__(self, registry: CollectorRegistry) -> None:
        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(name, doc, labels, registry=registry)

        self.queue_length = gauge("bank_queue_length", "Messages waiting in a Celery queue", ("queue",))
        self.pending = gauge("bank_pending_transfers", "Transfers accepted and not yet final")
        self.oldest_pending_age = gauge(
            "bank_oldest_pending_transfer_age_seconds", "Age of the oldest PENDING transfer (0 when none)"
        )
        self.outbox = gauge("bank_outbox_backlog", "Webhook events written but not yet relayed to deliveries")
        self.undelivered_age = gauge(
            "bank_webhook_oldest_undelivered_age_seconds",
            "Age of the oldest webhook event not yet delivered nor given up (0 when none)",
        )
        self.audit_unsealed = gauge("bank_audit_unsealed_rows", "Committed audit rows not yet chained by the sealer")
        self.audit_seal_lag = gauge(
            "bank_audit_seal_lag_seconds", "Age of the oldest audit row not yet chained by the sealer (0 when all are)"
        )
        self.parked = gauge(
            "bank_parked_transfers",
            "PENDING transfers the sweeper stopped re-publishing after SWEEPER_MAX_REQUEUES attempts",
        )
        self.measured_at = gauge(
            "bank_backlog_measured_timestamp_seconds", "When the backlog was last measured in Postgres"
        )
        self.queues_measured_at = gauge(
            "bank_queue_length_measured_timestamp_seconds", "When the queue depths were last read from the broker"
        )
        # A failed measurement leaves the gauges above as they were (stale, with their "measured"
        # time) rather than writing a 0 that would look healthy; it counts here and marks the
        # dependency down, so the alert names Postgres, the broker or Redis.
        self.measure_errors = Counter(
            "bank_backlog_measure_errors_total",
            "Backlog measurements that failed, by the dependency that could not be read",
            ["source"],  # postgres | broker | redis
            registry=registry,
        )
        self.dependency_up = gauge(
            "bank_dependency_up",
            "1 if the backlog exporter's last attempt to read this dependency succeeded, else 0",
            ("dependency",),
        )
        self.queue_configured = gauge(
            "bank_queue_configured",
            "1 for each queue this deployment configures: each needs a fresh worker heartbeat",
            ("queue",),
        )
        # Registered at the first tick read: until beat has ever ticked it is absent, not a 0 (1970).
        self._registry = registry
        self.scheduler_tick: Gauge | None = None
        self.money = MoneyCounters()  # holds, captures, refunds: read from Postgres with the backlog
        registry.register(self.money)

    def set_backlog(self, backlog: Backlog) -> None:
        self.pending.set(backlog.pending_transfers)
        self.oldest_pending_age.set(backlog.oldest_pending_age_seconds)
        self.outbox.set(backlog.outbox_backlog)
        self.undelivered_age.set(backlog.oldest_undelivered_webhook_age_seconds)
        self.audit_unsealed.set(backlog.unsealed_audit_rows)
        self.audit_seal_lag.set(backlog.oldest_unsealed_audit_age_seconds)
        self.parked.set(backlog.parked_transfers)
        self.measured_at.set_to_current_time()

    def configure(self, queues: tuple[str, ...], dependencies: tuple[str, ...]) -> None:
        for queue in queues:
            self.queue_configured.labels(queue=queue).set(1)
        for dependency in dependencies:
            self.measure_errors.labels(source=dependency)

    def measured(self, dependency: str, ok: bool) -> None:
        self.dependency_up.labels(dependency=dependency).set(1 if ok else 0)
        if not ok:
            self.measure_errors.labels(source=dependency).inc()

    def set_scheduler_tick(self, timestamp: float | None) -> None:
        if timestamp is None:  # never ticked: absent (SchedulerDown covers it while Redis answers)
            return
        if self.scheduler_tick is None:
            self.scheduler_tick = Gauge(
                "bank_scheduler_last_tick_timestamp_seconds",
                "When beat (the scheduler) last published a task, as it recorded in Redis",
                registry=self._registry,
            )
        self.scheduler_tick.set(timestamp)

    def set_queue_depths(self, depths: Mapping[str, int]) -> None:
        for queue, depth in depths.items():
            self.queue_length.labels(queue=queue).set(depth)
        self.queues_measured_at.set_to_current_time()


class MoneyCounters(Collector):
    """Counters whose totals are read from Postgres (core/observability/money.py): exported once
    measured, as counters, so rate() and increase() work as on any counter."""

    def __init__(self) -> None:
        self.totals: MoneyTotals | None = None

    def describe(self) -> list[Metric]:
        return []  # not known before the first measurement; nothing to check against at registration

    def collect(self) -> Iterator[Metric]:
        totals = self.totals
        if totals is None:
            return
        holds = CounterMetricFamily("bank_holds", "Holds placed, and how they ended", labels=["outcome"])
        for outcome, count in totals.holds.items():
            holds.add_metric([outcome], count)
        yield holds
        amounts = CounterMetricFamily(
            "bank_hold_minor_units",
            "Amounts held when placed, then captured or released (voided, expired), in minor units",
            labels=["currency", "outcome"],
        )
        for (currency, outcome), amount in sorted(totals.hold_amounts.items()):
            amounts.add_metric([currency, outcome], amount)
        yield amounts
        # The same name as the API's and the workers' money moved (kind TRANSFER, DEPOSIT): captures
        # move money too, and only Postgres sees them all whichever process captured.
        moved = CounterMetricFamily(
            "bank_money_moved_minor_units",
            "Amount moved by completed transfers, in minor units",
            labels=["currency", "kind"],
        )
        for currency, amount in sorted(totals.captured.items()):
            moved.add_metric([currency, "CAPTURE"], amount)
        yield moved
        refunds = CounterMetricFamily("bank_refunds", "Refunds completed")
        refunds.add_metric([], totals.refunds)
        yield refunds
        refunded = CounterMetricFamily(
            "bank_refunded_minor_units", "Amount refunded, in minor units", labels=["currency"]
        )
        for currency, amount in sorted(totals.refunded.items()):
            refunded.add_metric([currency], amount)
        yield refunded
