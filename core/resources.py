"""What a request or a task works with: the settings, a DB engine and its sessions, a Redis client.

One shape for both entry points: the API opens one set per app (web/__init__.py), a worker one
per process after the prefork (worker/runtime.py), so no socket is shared across a fork.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.config import Settings
from core.db import make_engine, make_session_factory


@dataclass(frozen=True)
class Resources:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    redis: Redis

    @classmethod
    def open(cls, settings: Settings, *, pool_size: int, redis_timeout: float) -> Resources:
        engine = make_engine(settings, pool_size=pool_size)
        return cls(
            settings=settings,
            engine=engine,
            sessions=make_session_factory(engine),
            redis=Redis.from_url(settings.redis_url, socket_timeout=redis_timeout, socket_connect_timeout=3),
        )

    def close(self) -> None:
        self.engine.dispose()
        self.redis.close()
