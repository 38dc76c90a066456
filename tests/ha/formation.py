"""A pg_auto_failover formation (ops/ha/formation.sh) for a test: each run in a fresh directory of
its own (its XDG state and pid files inside it), stopped and removed afterwards."""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.ha.postgres import data_root, free_port

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "ops" / "ha" / "formation.sh"


@dataclass
class Formation:
    dir: Path
    host: str
    base: int  # the monitor's port; the nodes are on base + 1 and base + 2
    env: dict[str, str]

    @property
    def ports(self) -> tuple[int, int]:
        return self.base + 1, self.base + 2

    @property
    def url(self) -> str:
        user = "bankha" if os.geteuid() == 0 else getpass.getuser()
        hosts = ",".join(f"{self.host}:{p}" for p in self.ports)
        return f"postgres://{user}@{hosts}/bank?target_session_attrs=read-write"

    def run(self, *args: str, timeout: float = 60) -> str:
        done = subprocess.run(
            [str(SCRIPT), args[0], str(self.dir), *args[1:]],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **self.env},
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def primary(self) -> str:
        return self.run("primary")

    def logs(self) -> dict[str, str]:
        return {log.name: log.read_text(errors="replace")[-3000:] for log in self.dir.glob("*.log")}


def _taken(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def formation(host: str = "127.0.0.1", clients: str | None = None) -> Iterator[Formation]:
    """A started formation whose data nodes also listen on ``host`` and admit ``clients`` (a CIDR)."""
    if shutil.which("pg_autoctl") is None and os.geteuid() != 0:
        pytest.skip("needs pg_autoctl (postgresql-15-auto-failover), or root to install it")
    directory = Path(tempfile.mkdtemp(prefix="formation-", dir=data_root("ha")))
    base = free_port()
    while base > 60000 or any(_taken(base + i) for i in range(3)):
        base = free_port()
    env = {"HA_LISTEN": ",".join(dict.fromkeys(["127.0.0.1", host]))}
    if clients:
        env["HA_CLIENTS"] = clients
    f = Formation(directory, host, base, env)
    try:
        try:
            f.run("start", str(base), timeout=400)
        except (AssertionError, subprocess.TimeoutExpired) as failed:
            raise AssertionError(f"the formation did not start: {failed}\n{f.logs()}") from failed
        yield f
    finally:
        subprocess.run([str(SCRIPT), "stop", str(directory)], capture_output=True, timeout=180)
        shutil.rmtree(directory, ignore_errors=True)
