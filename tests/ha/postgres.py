"""Throwaway Postgres servers on 127.0.0.1 TCP ports, for the ha tier: real servers to fail
over between (pgserver's bundled binaries; as root they run as its ``pgserver`` user, since
Postgres refuses to run as root)."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from pgserver import _commands  # type: ignore[attr-defined]
from pgserver.utils import ensure_user_exists  # type: ignore[attr-defined]

SYSTEM_USER = "pgserver"
ROOT = Path(__file__).resolve().parents[2]


def data_root(name: str) -> Path:
    """A directory of this test run's data dir (BANK_TEST_DATA_DIR), not pytest's tmp dirs,
    which are private to root: the server's user must be able to reach it."""
    root = Path(os.environ.get("BANK_TEST_DATA_DIR", ROOT / ".data" / "test")) / name
    root.mkdir(parents=True, exist_ok=True)
    return root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class TcpPostgres:
    pgdata: Path
    port: int

    @property
    def user(self) -> str | None:
        return SYSTEM_USER if os.geteuid() == 0 else None

    def init(self, *settings: str) -> TcpPostgres:
        """A fresh cluster (trust authentication on 127.0.0.1) with extra postgresql.conf lines."""
        shutil.rmtree(self.pgdata, ignore_errors=True)
        self.pgdata.mkdir(parents=True)
        if self.user:
            ensure_user_exists(self.user)
            entry = pwd.getpwnam(self.user)
            for path in self.pgdata.parents:  # the server user must reach its data dir
                if path == ROOT.parent:
                    break
                path.chmod(path.stat().st_mode | 0o711)
            os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        _commands.initdb(["-U", "postgres", "--auth=trust", "-E", "UTF8"], pgdata=self.pgdata, user=self.user)
        lines = ["listen_addresses = '127.0.0.1'", f"port = {self.port}", "unix_socket_directories = ''", *settings]
        with (self.pgdata / "postgresql.conf").open("a") as conf:
            conf.write("\n".join(lines) + "\n")
        return self

    def start(self) -> None:
        log = self.pgdata / "server.log"
        _commands.pg_ctl(["-w", "-l", str(log), "start"], pgdata=self.pgdata, user=self.user, timeout=60)

    def stop(self, mode: str = "fast") -> None:
        _commands.pg_ctl(["-w", "-m", mode, "stop"], pgdata=self.pgdata, user=self.user, timeout=60)

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.port}"
