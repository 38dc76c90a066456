"""The system under test, started from the Procfile: every entry but ``release`` (run first), each
through ``bash -c`` in its own process group. Settlement workers are the entries named ``worker*``."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from devtools import processes

BASH = "/bin/bash"
PAGE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def parse_procfile(text: str) -> dict[str, str]:
    """``name: command`` lines, in file order; blank lines and ``#`` comments ignored."""
    entries: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or ":" not in line:
            continue
        name, command = line.split(":", 1)
        entries[name.strip()] = command.strip()
    return entries


def is_settlement_worker(name: str) -> bool:
    return name.startswith("worker")


@dataclass
class System:
    root: Path
    env: dict[str, str]
    log_dir: Path
    port: int
    entries: dict[str, str]
    procs: dict[str, processes.Proc] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def run_release(self) -> None:
        if "release" in self.entries:
            self._run_blocking("release", self.entries["release"])

    def run_cli(self, name: str, command: str) -> None:
        self._run_blocking(name, command)

    def _run_blocking(self, name: str, command: str) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / f"{name}.log").open("ab") as log:
            subprocess.run(
                [BASH, "-c", command], cwd=self.root, env={**os.environ, **self.env}, stdout=log, stderr=log, check=True
            )

    def start(self, names: Iterable[str]) -> float:
        """Spawn these entries; returns the epoch time just before the first spawn."""
        started = time.time()
        for name in names:
            self.procs[name] = processes.spawn(
                name, [BASH, "-c", self.entries[name]], self.env, self.log_dir, self.root
            )
        return started

    def start_all(self) -> None:
        self.start(n for n in self.entries if n != "release")
        if "web" in self.procs:
            processes.wait_http(f"{self.url}/healthz", self.procs["web"])

    @property
    def worker_names(self) -> list[str]:
        return [n for n in self.entries if is_settlement_worker(n)]

    def stop(self, names: Iterable[str]) -> None:
        """Stop these entries together (SIGTERM to each group, SIGKILL after 15 s)."""
        chosen = [self.procs.pop(n) for n in list(names) if n in self.procs]
        with ThreadPoolExecutor(max(1, len(chosen))) as pool:
            list(pool.map(lambda p: p.stop(), chosen))

    def stop_all(self) -> None:
        self.stop(list(self.procs))

    def check_alive(self) -> list[str]:
        """Raise if the API or a settlement worker exited; return the other entries that exited (e.g. beat)."""
        gone = []
        for name, proc in self.procs.items():
            if proc.popen.poll() is None:
                continue
            if name == "web" or is_settlement_worker(name):
                raise RuntimeError(f"{name} exited with {proc.popen.returncode}; log tail:\n{proc.log()[-2000:]}")
            gone.append(f"{name} (exit {proc.popen.returncode})")
        return gone

    def group_rss_mb(self, names: Iterable[str]) -> float:
        procs = [self.procs.get(n) for n in names]
        groups = {p.popen.pid for p in procs if p is not None}
        return rss_of_groups(groups) / 2**20


def _members(groups: set[int]) -> Iterator[tuple[str, list[str]]]:
    """(pid, /proc stat fields after the command name) of every live process whose process group is
    in ``groups`` (a Procfile entry's tree)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) in groups:
                yield entry, fields
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile


def rss_of_groups(groups: set[int]) -> int:
    """Resident bytes of the processes of ``groups``."""
    total = 0
    for pid, _ in _members(groups):
        with contextlib.suppress(OSError, ValueError, IndexError):  # gone meanwhile
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    return total


def cpu_seconds_of_groups(groups: set[int]) -> float:
    """User + system CPU seconds so far of the live processes of ``groups``."""
    return sum(int(fields[11]) + int(fields[12]) for _, fields in _members(groups)) / CLOCK_TICKS


class RssSampler:
    """Samples the settlement workers' RSS every ``interval`` seconds in a background thread."""

    def __init__(self, system: System | None, interval: float = 1.0) -> None:
        self.system = system
        self.interval = interval
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> RssSampler:
        if self.system is not None:
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        assert self.system is not None
        while not self._stop.is_set():
            mb = self.system.group_rss_mb(self.system.worker_names)
            if mb > 0:
                self.samples.append(mb)
            self._stop.wait(self.interval)

    def summary(self) -> dict[str, float | int] | None:
        if not self.samples:
            return None
        return {
            "start": round(self.samples[0], 1),
            "max": round(max(self.samples), 1),
            "end": round(self.samples[-1], 1),
            "samples": len(self.samples),
        }


def cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return total - idle, total
