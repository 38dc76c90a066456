"""The Celery app, built from the same settings as the API."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import setup_logging

from core import logs
from core.config import get_settings

settings = get_settings()

celery_app = Celery("bank", broker=settings.broker_url, include=["worker.tasks"])
celery_app.conf.update(
    task_acks_late=True,  # a task is acknowledged only once settled...
    task_reject_on_worker_lost=True,  # ...and re-queued if its worker dies mid-way
    worker_prefetch_multiplier=1,
    task_ignore_result=True,  # status lives in Postgres, polled through the API
    task_serializer="json",
    accept_content=["json"],
    task_default_queue="transfers",
    broker_connection_retry_on_startup=True,
    broker_transport_options={"visibility_timeout": 3600, "socket_connect_timeout": 3},
    broker_connection_timeout=3,
    worker_hijack_root_logger=False,
    beat_schedule={
        "sweep-pending-transfers": {
            "task": "worker.tasks.sweep_pending",
            "schedule": settings.sweeper_interval_seconds,
        }
    },
)


@setup_logging.connect
def _logging(**_: Any) -> None:
    logs.configure(settings.log_level)
