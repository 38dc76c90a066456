"""The Celery app factory: ``create_celery(settings)``, as ``web.create_app(settings)`` is for the API.

Tasks are declared with ``shared_task`` and an explicit name, so no module imports a built app:
the worker process builds it once (worker/celery.py, what ``celery -A worker`` finds) and the
API builds its own from its settings to publish with (web/__init__.py).
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu.entity import Exchange, Queue

from core.config import Settings
from core.transfers.routing import queue_names
from worker import runtime, telemetry  # telemetry connects the metrics and tracing signal handlers

__all__ = ["MAINTENANCE_QUEUE", "TASK_MODULES", "create_celery", "queues", "telemetry"]

# Every module that declares tasks: each registers with the app when the worker imports it.
TASK_MODULES = [
    "worker.settlement",
    "worker.sweeper",
    "worker.audit_sealer",
    "worker.hold_expiry",
    "worker.heartbeat",
    "worker.webhooks",
    "worker.schedules",
    "worker.events_retention",
]


# The periodic upkeep (sweeper, audit sealer, hold expiry) has a queue and a pool of its own: the
# sweeper that rescues stuck settlement must never wait behind the batches it rescues.
MAINTENANCE_QUEUE = "maintenance"
_MAINTENANCE_TASKS = (
    "worker.tasks.sweep_pending",
    "worker.tasks.seal_audit",
    "worker.tasks.expire_holds",
    "worker.tasks.run_schedules",
    "worker.tasks.prune_events",
)


def queues(settings: Settings) -> tuple[str, ...]:
    """Every queue the workers consume, declared up front (so RabbitMQ makes them quorum queues):
    "transfers" (the default, for any task without a route), "maintenance" (sweeper, sealer,
    hold expiry), one settlement queue per partition ("transfers.0" ...), and "webhooks" apart so
    partner servers never delay settlement. In production each has its pool (Procfile):
    `-X webhooks,maintenance` consumes every settlement partition, a host can take a subset with
    `-Q transfers,transfers.0,transfers.1`; dev and tests run one pool that consumes them all."""
    return ("transfers", MAINTENANCE_QUEUE, *queue_names(settings.settle_partitions), "webhooks")


def create_celery(settings: Settings, *, set_as_current: bool = True) -> Celery:
    """The Celery app for ``settings``, with the worker runtime (worker/runtime.py) attached.

    ``set_as_current``: tasks called in this thread run in this app (Celery's default). The API
    passes False and makes its app the process default instead: it publishes, it runs no task."""
    app = Celery("bank", broker=settings.broker_url, include=TASK_MODULES, set_as_current=set_as_current)
    app.conf.update(
        **_broker_options(settings),
        task_acks_late=True,  # a task is acknowledged only once settled...
        task_reject_on_worker_lost=True,  # ...and re-queued if its worker dies mid-way
        worker_prefetch_multiplier=1,
        task_ignore_result=True,  # status lives in Postgres, polled through the API
        task_serializer="json",
        accept_content=["json"],
        task_default_queue="transfers",
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=3,
        # A task running when the broker connection drops cannot be acknowledged on the new one:
        # cancel it and let the broker redeliver it (acks_late), as Celery 6 will by default.
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_hijack_root_logger=False,
        beat_schedule=_beat_schedule(settings),
        task_routes={
            # Partner deliveries wait on other companies' servers: never in front of settlements.
            "worker.webhooks.*": {"queue": "webhooks"},
            **{name: {"queue": MAINTENANCE_QUEUE} for name in _MAINTENANCE_TASKS},
        },
        task_annotations={
            # The HTTP timeout bounds each network step; this bounds the whole delivery task.
            "worker.webhooks.deliver": {"soft_time_limit": int(3 * settings.webhook_timeout_seconds) + 10},
        },
    )
    runtime.attach(app, runtime.WorkerRuntime(settings))
    return app


_RABBITMQ_EXCHANGE = "bank.tasks"


def _broker_options(settings: Settings) -> dict[str, Any]:
    names = queues(settings)
    if settings.broker_url.split("://")[0] in ("amqp", "amqps", "pyamqp"):
        # Production broker: replicated quorum queues, and a publish returns only once
        # RabbitMQ has confirmed it, so an accepted transfer's message is not lost in flight.
        # Bound through a topic exchange: a retry's countdown then goes through RabbitMQ's native
        # delayed delivery (Celery's celery_delayed_* exchanges). Through a direct exchange a
        # quorum queue (no global QoS) makes the worker hold the retry until it is due, a worker
        # process lost for the countdown.
        exchange = Exchange(_RABBITMQ_EXCHANGE, type="topic")
        return {
            "task_queues": [
                Queue(name, exchange, routing_key=name, queue_arguments={"x-queue-type": "quorum"}) for name in names
            ],
            "task_default_exchange": _RABBITMQ_EXCHANGE,
            "task_default_exchange_type": "topic",
            "task_default_routing_key": "transfers",
            "broker_transport_options": {"confirm_publish": True},
        }
    # Redis redelivers an unacknowledged task only after the visibility timeout; the
    # sweeper covers the gap, so the timeout can stay well above the longest task.
    return {
        "task_queues": [Queue(name) for name in names],
        "broker_transport_options": {
            "visibility_timeout": settings.broker_visibility_timeout_seconds,
            "socket_connect_timeout": 3,
        },
    }


def _beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    return {
        # The safety net that nudges PENDING transfers again. Ticks that piled up while no worker
        # ran are dropped (a worker coming back would run them back to back); the next one sweeps.
        "sweep-pending-transfers": {
            "task": "worker.tasks.sweep_pending",
            "schedule": settings.sweeper_interval_seconds,
            "options": {"expires": max(10.0, 5 * settings.sweeper_interval_seconds)},
        },
        # The audit hash chain, off the writers' path. One sealer runs at a time (an advisory
        # lock); a tick no worker took in time is dropped, the next one seals the same rows.
        "seal-audit": {
            "task": "worker.tasks.seal_audit",
            "schedule": settings.audit_seal_interval_seconds,
            "options": {"expires": max(10.0, 5 * settings.audit_seal_interval_seconds)},
        },
        # Holds past their expiry end EXPIRED. Idempotent: a dropped tick leaves them to the next.
        "expire-holds": {
            "task": "worker.tasks.expire_holds",
            "schedule": settings.hold_expiry_interval_seconds,
            "options": {"expires": max(10.0, 5 * settings.hold_expiry_interval_seconds)},
        },
        # The outbox's day partitions: the next days made, days past 30 days dropped whole, any
        # leftovers deleted in short batches (core/events_partitions.py). Hourly is plenty for a
        # retention measured in days; a dropped tick leaves them to the next.
        "prune-events": {
            "task": "worker.tasks.prune_events",
            "schedule": 3600.0,
            "options": {"expires": 3600.0},
        },
        # Scheduled transfers: due occurrences become transfers, settled ones become runs.
        # Exactly once per occurrence however many ticks run (core/schedules/materialiser.py).
        "run-schedules": {
            "task": "worker.tasks.run_schedules",
            "schedule": settings.schedule_interval_seconds,
            "options": {"expires": max(10.0, 3 * settings.schedule_interval_seconds)},
        },
        # One heartbeat per queue, sent to that queue: each pool proves it takes work from each
        # queue it should consume. A tick not taken in time is dropped; the next one counts.
        **{
            f"heartbeat-{queue}": {
                "task": "worker.tasks.heartbeat",
                "schedule": settings.metrics_refresh_seconds,
                "args": (queue,),
                "options": {"queue": queue, "expires": 2 * settings.metrics_refresh_seconds},
            }
            for queue in queues(settings)
        },
        # Webhooks: outbox events -> deliveries, and deliveries whose (re)try is due. A tick
        # that no worker took in time is dropped: the next one does the same work.
        "relay-webhook-outbox": {
            "task": "worker.webhooks.relay_outbox",
            "schedule": settings.webhook_relay_interval_seconds,
            "options": {"expires": max(10.0, 5 * settings.webhook_relay_interval_seconds)},
        },
        "dispatch-due-webhooks": {
            "task": "worker.webhooks.dispatch_due",
            "schedule": settings.webhook_relay_interval_seconds,
            "options": {"expires": max(10.0, 5 * settings.webhook_relay_interval_seconds)},
        },
    }
