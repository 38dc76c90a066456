"""Start the canonical entry points (gunicorn, celery) as child processes and stop them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 15) -> None:
        if self.popen.poll() is not None:
            return
        self.signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.popen.wait(5)


def spawn(name: str, args: list[str], env: dict[str, str], log_dir: Path, cwd: Path) -> Proc:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with log_path.open("ab") as out:  # the child keeps its own descriptor
        popen = subprocess.Popen(
            args, env={**os.environ, **env}, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Proc(name, popen, log_path)


def run(args: list[str], env: dict[str, str], cwd: Path) -> None:
    subprocess.run(args, env={**os.environ, **env}, cwd=cwd, check=True)


def migrate(env: dict[str, str], cwd: Path) -> None:
    run([str(BIN / "alembic"), "upgrade", "head"], env, cwd)


def start_api(env: dict[str, str], log_dir: Path, cwd: Path, port: int, workers: int = 2) -> Proc:
    """The API under gunicorn, or under granian when WEB_SERVER=granian (in ``env`` or ours):
    ``python -m web.serve``, as the Procfile runs it."""
    if (env.get("WEB_SERVER") or os.environ.get("WEB_SERVER", "gunicorn")) == "granian":
        command = [str(BIN / "python"), "-m", "web.serve", "--bind", f"127.0.0.1:{port}", "--workers", str(workers)]
        env = {**env, "WEB_SERVER": "granian", "WEB_GRACEFUL_SECONDS": "5"}
    else:
        command = [
            str(BIN / "gunicorn"), "web:create_app()",
            "--bind", f"127.0.0.1:{port}",
            "--workers", str(workers),
            "--timeout", "60",
            "--graceful-timeout", "5",
        ]  # fmt: skip
    proc = spawn("api", command, env, log_dir, cwd)
    wait_http(f"http://127.0.0.1:{port}/healthz", proc)
    return proc


def start_worker(
    name: str,
    env: dict[str, str],
    log_dir: Path,
    cwd: Path,
    concurrency: int = 2,
    beat: bool = False,
    queues: list[str] | None = None,
) -> Proc:
    """A Celery pool; ``queues`` as on the command line, e.g. ``["--queues", "webhooks"]``. Without
    them it consumes every queue (the partitions, ``maintenance``, ``webhooks``): the one pool of the
    demo and the tests; production runs a pool per group (Procfile)."""
    args = [
        str(BIN / "celery"), "-A", "worker", "worker",
        "--hostname", f"{name}@%h",
        "--concurrency", str(concurrency),
        "--without-gossip", "--without-mingle",
        "--loglevel", "INFO",
        *(queues or []),
    ]  # fmt: skip
    if beat:
        args += ["--beat", "--schedule", str(log_dir / f"{name}-beat-schedule")]
    proc = spawn(name, args, env, log_dir, cwd)
    deadline = time.monotonic() + 60
    while " ready." not in proc.log():
        if proc.popen.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"celery worker {name} failed to start:\n{proc.log()[-3000:]}")
        time.sleep(0.1)
    return proc


def start_beat(env: dict[str, str], log_dir: Path, cwd: Path, name: str = "beat") -> Proc:
    """Celery beat on its own, as the Procfile and docker-compose run it."""
    args = [
        str(BIN / "celery"),
        "-A",
        "worker",
        "beat",
        "--loglevel",
        "INFO",
        "--schedule",
        str(log_dir / f"{name}-schedule"),
    ]
    proc = spawn(name, args, env, log_dir, cwd)
    deadline = time.monotonic() + 60
    while "beat: Starting" not in proc.log():
        if proc.popen.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"celery beat failed to start:\n{proc.log()[-3000:]}")
        time.sleep(0.1)
    return proc


def start_backlog_exporter(env: dict[str, str], log_dir: Path, cwd: Path, port: int) -> Proc:
    """The backlog exporter (worker/backlog_exporter.py), serving on 127.0.0.1:port."""
    proc = spawn(
        "backlog-exporter",
        [str(BIN / "python"), "-m", "worker.backlog_exporter"],
        {**env, "BACKLOG_EXPORTER_PORT": str(port), "BACKLOG_EXPORTER_ADDR": "127.0.0.1"},
        log_dir,
        cwd,
    )
    wait_http(f"http://127.0.0.1:{port}/metrics", proc)
    return proc


def wait_http(url: str, proc: Proc, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.popen.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{proc.name} failed to start:\n{proc.log()[-3000:]}")
        time.sleep(0.1)
