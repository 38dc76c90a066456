"""The worker process's composition root: ``celery -A worker`` finds ``app`` here.

Celery looks for ``worker.app``/``worker.celery`` on the package, then imports this module
(``worker/__init__.py`` stays empty, so importing a task module builds no app). The one place
the worker reads the environment, as ``web.create_app()`` is for the API.
"""

from __future__ import annotations

from typing import Any

from celery.signals import setup_logging

from core import logs
from core.config import get_settings
from worker.app import create_celery

settings = get_settings()
app = create_celery(settings)


@setup_logging.connect
def _logging(**_: Any) -> None:
    logs.configure(settings.log_level)
