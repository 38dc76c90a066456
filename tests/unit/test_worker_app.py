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
