"""A Celery task never logs with the ids of the task that ran before it in the same process."""

from __future__ import annotations

import structlog
from celery.signals import task_prerun

import worker.telemetry  # noqa: F401 - connects the signal handlers


def test_each_task_starts_with_a_clean_log_context() -> None:
    structlog.contextvars.bind_contextvars(request_id="req-of-an-earlier-settlement", transfer_id="t-1")
    task_prerun.send(sender=None, task_id="task-2", task=None, args=(), kwargs={})
    assert structlog.contextvars.get_contextvars() == {"task_id": "task-2"}
