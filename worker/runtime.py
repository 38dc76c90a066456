"""What a task runs with, attached to the Celery app that ``create_celery(settings)`` built.

The settings are the app's; the DB engine and Redis client are this process's, opened lazily
on first use after the prefork (a socket opened before the fork would be shared by children).
"""

from __future__ import annotations

import os

from celery import Celery, current_app

from core.config import Settings
from core.resources import Resources
from worker import telemetry


class WorkerRuntime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._resources: Resources | None = None
        self._pid = 0

    def resources(self) -> Resources:
        """This process's engine, sessions and Redis client (opened again in a forked child)."""
        if self._resources is None or self._pid != os.getpid():
            self._resources = Resources.open(self.settings, pool_size=2, redis_timeout=5)
            self._pid = os.getpid()
            telemetry.instrument_engine(self._resources.engine)
        return self._resources

    def close(self) -> None:
        if self._resources is not None and self._pid == os.getpid():
            self._resources.close()
        self._resources = None


def attach(app: Celery, runtime: WorkerRuntime) -> None:
    app.bank_runtime = runtime


def runtime(app: Celery | None = None) -> WorkerRuntime:
    """The runtime of ``app``, else of the app running the current task (Celery's current app)."""
    found = getattr(app or current_app, "bank_runtime", None)
    if not isinstance(found, WorkerRuntime):
        raise RuntimeError("the current Celery app was not built by worker.app.create_celery(settings)")
    return found


def settings() -> Settings:
    return runtime().settings


def resources() -> Resources:
    return runtime().resources()
