"""The per-queue heartbeat: proves each pool takes work from each queue it should consume."""

from __future__ import annotations

from celery import shared_task

from core.observability import metrics


@shared_task(name="worker.tasks.heartbeat", ignore_result=True)
def heartbeat(queue: str) -> None:
    """Beat sends one to every queue: its timestamp advances only while a pool takes work from
    that queue, so a stopped, hung or missing pool shows per queue (alert NoWorkerHeartbeat)."""
    metrics.WORKER_HEARTBEAT.labels(queue=queue).set_to_current_time()
