"""Per-process DB engine and Redis client, created lazily after prefork so no socket is shared."""

from __future__ import annotations

import os
from dataclasses import dataclass

from redis import Redis
from sqlalchemy.orm import Session, sessionmaker

from core.config import get_settings
from core.db import make_engine, make_session_factory
from worker import telemetry


@dataclass
class Resources:
    pid: int
    sessions: sessionmaker[Session]
    redis: Redis


_current: Resources | None = None


def get() -> Resources:
    global _current
    if _current is None or _current.pid != os.getpid():
        settings = get_settings()
        engine = make_engine(settings, pool_size=2)
        telemetry.instrument_engine(engine)
        _current = Resources(
            pid=os.getpid(),
            sessions=make_session_factory(engine),
            redis=Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=3),
        )
    return _current
