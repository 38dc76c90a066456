"""Celery entry point: ``celery -A worker worker`` finds ``app`` here."""

from worker.app import celery_app as app

__all__ = ["app"]
