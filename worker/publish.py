"""Publishing tasks after commit, without ever failing the caller."""

from __future__ import annotations

from typing import Any

import structlog
from celery import Task
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

log = structlog.get_logger(__name__)

# A few quick tries, then give up: the row is durable and a sweeper publishes it again.
RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2}


def publish(task: Task, *args: Any, queue: str | None = None, **kwargs: Any) -> bool:
    """Queue ``task`` (on ``queue``, else its routed queue); on a broker failure log it and
    return False instead of raising."""
    try:
        routing = {"queue": queue} if queue else {}
        task.apply_async(args=list(args), kwargs=kwargs, retry=True, retry_policy=RETRY_POLICY, **routing)
        return True
    except (OSError, RedisError, KombuError) as exc:
        log.error("enqueue_failed", task=task.name, error=type(exc).__name__, ids=list(args))
        return False
