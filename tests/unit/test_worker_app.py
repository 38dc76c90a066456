"""The worker's composition root: ``celery -A worker`` finds one app built from the settings, with
every task under the name that messages in flight, beat and routes carry."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from core.config import Settings, get_settings
from worker.app import create_celery
from worker.runtime import runtime

ROOT = Path(__file__).resolve().parents[2]
TASK_NAMES = {
    "worker.tasks.settle_partition",
    "worker.tasks.sweep_pending",
    "worker.tasks.seal_audit",
    "worker.tasks.expire_holds",
    "worker.tasks.heartbeat",
    "worker.tasks.run_schedules",
    "worker.tasks.prune_events",
    "worker.webhooks.relay_outbox",
    "worker.webhooks.dispatch_due",
    "worker.webhooks.deliver",
}


def test_celery_a_worker_finds_the_app_with_every_task_under_its_name() -> None:
    from celery.app.utils import find_app

    app = find_app("worker")  # what `celery -A worker worker|beat` does
    app.loader.import_default_modules()  # the include= list, as a worker imports it at start
    assert {name for name in app.tasks if not name.startswith("celery.")} == TASK_NAMES
    assert runtime(app).settings is get_settings()  # built once, from the environment
    scheduled = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert scheduled <= TASK_NAMES


def test_every_periodic_tick_expires() -> None:
    """Ticks that piled up while no worker ran are dropped, not run back to back when one starts:
    each periodic task's next tick does the same work."""
    settings = Settings()
    schedule = create_celery(settings, set_as_current=False).conf.beat_schedule
    for name, entry in schedule.items():
        expires = entry.get("options", {}).get("expires")
        assert expires is not None and expires >= entry["schedule"], name


def test_importing_a_task_module_builds_no_app() -> None:
    """The API imports task modules to publish; that must not read the environment for a second app."""
    code = "import sys, worker.settlement, worker.webhooks; assert 'worker.celery' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_the_app_takes_its_configuration_from_the_settings_it_is_given() -> None:
    settings = Settings(webhook_timeout_seconds=7, settle_partitions=4, celery_broker_url="amqp://guest@h//")
    # (app.conf.broker_url is not asserted: Celery lets a CELERY_BROKER_URL in the environment win.)
    app = create_celery(settings, set_as_current=False)
    app.loader.import_default_modules()
    assert app.tasks["worker.webhooks.deliver"].soft_time_limit == 3 * 7 + 10
    queues = app.conf.task_queues
    assert [q.name for q in queues][-2:] == ["transfers.3", "webhooks"]
    assert queues[0].queue_arguments == {"x-queue-type": "quorum"}  # the amqp broker of these settings
    assert runtime(app).settings is settings


def test_the_upkeep_has_a_queue_of_its_own() -> None:
    """The sweeper, sealer and hold expiry never wait behind settlement batches: routed to
    "maintenance", which the production settlement pool does not consume (Procfile)."""
    from worker.app import MAINTENANCE_QUEUE

    app = create_celery(Settings(), set_as_current=False)
    app.loader.import_default_modules()
    for name in ("worker.tasks.sweep_pending", "worker.tasks.seal_audit", "worker.tasks.expire_holds"):
        assert app.amqp.router.route({}, name)["queue"].name == MAINTENANCE_QUEUE, name
    assert app.amqp.router.route({}, "worker.tasks.settle_partition")["queue"].name == "transfers"
    heartbeats = {e["args"][0] for e in app.conf.beat_schedule.values() if e["task"] == "worker.tasks.heartbeat"}
    assert MAINTENANCE_QUEUE in heartbeats
    procfile = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if ": " in line)
    assert "--exclude-queues webhooks,maintenance" in procfile["worker"]
    assert "--queues maintenance" in procfile["maintenance"]


def test_rabbitmq_retries_wait_in_the_broker_not_in_a_worker() -> None:
    """Quorum queues bound through a topic exchange: a countdown goes through RabbitMQ's native
    delayed delivery (through a direct exchange the worker held the retry until due); a task
    running when the connection drops is cancelled and redelivered (acks_late)."""
    app = create_celery(Settings(celery_broker_url="amqp://guest@h//"), set_as_current=False)
    for queue in app.conf.task_queues:
        assert queue.exchange.type == "topic" and queue.routing_key == queue.name, queue
    assert app.conf.worker_cancel_long_running_tasks_on_connection_loss is True
    assert app.conf.broker_connection_retry_on_startup is True


def test_settlement_retries_are_short_and_never_below_a_second() -> None:
    """RabbitMQ's native delayed delivery counts whole seconds: a countdown under 1 s is refused."""
    from worker.settlement import RETRY_DELAY_MAX, retry_delay

    delays = [retry_delay(n) for n in range(12) for _ in range(20)]
    assert min(delays) >= 1.0 and max(delays) <= RETRY_DELAY_MAX
