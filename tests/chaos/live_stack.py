"""The bank under real Prometheus and Alertmanager, for the chaos tier's live alerting tests
(test_no_page_under_load.py, test_time_to_page_live.py): one home for the stack they share.

Real processes as the Procfile runs them: the API (its gunicorn master serving the metrics
port), a settlement pool, a webhooks pool and a maintenance pool (each serving /metrics), beat
on its own and the backlog exporter; real Prometheus with the shipped prometheus.yml and
alerts.yml and real Alertmanager with the shipped alertmanager.yml, only addresses changed
(and the scrape and evaluation interval, or Alertmanager's durations, where a test says so).
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from devtools import processes
from tests.chaos.conftest import stop_all
from tests.ops.servers import Alertmanager, Prometheus, start_alertmanager, start_prometheus

ROOT = Path(__file__).resolve().parents[2]
# The Procfile's pools: settlement takes every queue but the webhooks' and maintenance's.
POOLS = {
    "settle": ["--exclude-queues", "webhooks,maintenance"],
    "webhooks": ["--queues", "webhooks"],
    "maintenance": ["--queues", "maintenance"],
}


@dataclass
class LiveStack:
    tmp: Path
    api_env: dict[str, str]
    api_workers: int
    concurrency: dict[str, int]  # pool name -> prefork processes
    api_port: int = field(default_factory=processes.free_port)
    # Metrics ports, fixed for the run: a restarted process is scraped at the same address.
    ports: dict[str, int] = field(
        default_factory=lambda: {n: processes.free_port() for n in ("api", "exporter", *POOLS)}
    )
    procs: dict[str, processes.Proc] = field(default_factory=dict)
    am: Alertmanager | None = None
    prometheus: Prometheus | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def _multiproc(self, name: str) -> str:
        path = self.tmp / f"prom-{name}"
        path.mkdir(exist_ok=True)
        return str(path)

    def start_api(self) -> None:
        env = {
            **self.api_env,
            "API_METRICS_PORT": str(self.ports["api"]),
            "API_METRICS_ADDR": "127.0.0.1",
            "PROMETHEUS_MULTIPROC_DIR": self._multiproc("api"),
        }
        self.procs["api"] = processes.start_api(env, self.tmp, ROOT, self.api_port, workers=self.api_workers)

    def start_pool(self, name: str) -> None:
        env = {
            "PROMETHEUS_MULTIPROC_DIR": self._multiproc(name),
            "WORKER_METRICS_PORT": str(self.ports[name]),
            "WORKER_METRICS_ADDR": "127.0.0.1",
        }
        self.procs[name] = processes.start_worker(
            name, env, self.tmp, ROOT, concurrency=self.concurrency[name], queues=POOLS[name]
        )

    def start_beat(self, name: str = "beat") -> None:
        self.procs["beat"] = processes.start_beat({}, self.tmp, ROOT, name=name)

    def start_exporter(self) -> None:
        self.procs["exporter"] = processes.start_backlog_exporter({}, self.tmp, ROOT, self.ports["exporter"])

    def kill(self, name: str) -> None:
        self.procs[name].signal(signal.SIGKILL)
        self.procs[name].popen.wait(10)

    def stop(self) -> None:
        if self.prometheus is not None:
            self.prometheus.proc.stop()
        if self.am is not None:
            self.am.stop()
        # Beat first, while the pools still take what it sends (no heartbeat left in a queue), then
        # the rest side by side: each stop waits for its process's own shutdown.
        if "beat" in self.procs:
            self.procs["beat"].stop()
        stop_all(list(self.procs.values()))


@contextmanager
def live_stack(
    tmp: Path,
    *,
    api_env: dict[str, str],
    api_workers: int,
    concurrency: dict[str, int],
    interval: str | None = None,
    am_scale: float = 1,
) -> Iterator[LiveStack]:
    """The whole stack started, every process stopped afterwards. ``interval``: Prometheus's scrape
    and evaluation interval (default the shipped 15 s); ``am_scale``: Alertmanager's durations divided."""
    stack = LiveStack(tmp, api_env, api_workers, concurrency)
    try:
        # Side by side: each start waits for its process to be ready, mostly importing the app.
        starts: list[Callable[[], None]] = [stack.start_api, stack.start_beat, stack.start_exporter]
        starts += [lambda name=name: stack.start_pool(name) for name in POOLS]
        with ThreadPoolExecutor(len(starts)) as pool:
            for started in [pool.submit(start) for start in starts]:
                started.result()
        stack.am = start_alertmanager(tmp, am_scale)
        stack.prometheus = start_prometheus(
            tmp,
            {
                "api": [f"127.0.0.1:{stack.ports['api']}"],
                "worker": [f"127.0.0.1:{stack.ports[name]}" for name in POOLS],
                "backlog": [f"127.0.0.1:{stack.ports['exporter']}"],
                "alertmanager": [stack.am.address],
            },
            stack.am.address,
            interval=interval,
        )
        yield stack
    finally:
        stack.stop()
