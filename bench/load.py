"""The load generator: wrk with bench/transfers.lua (or batches.lua), and what its output means."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LUA_SCRIPT = Path(__file__).with_name("transfers.lua")
BATCH_LUA_SCRIPT = Path(__file__).with_name("batches.lua")  # POST /transfers/batch
WRK_MISSING = (
    "wrk is not installed: the load generator must cost little CPU next to the system. "
    "Install it with `apt-get install -y wrk` (Debian/Ubuntu) or `brew install wrk`."
)


@dataclass
class WrkResult:
    wall_s: float
    cpu_s: float  # user + sys of the wrk process
    started_at: float  # epoch seconds
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def status_counts(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in sorted(self.report.get("status", {}).items())}

    @property
    def accepted(self) -> int:
        """Transfers accepted: 202 responses, or in batch mode the items answered 202."""
        if "items_accepted" in self.report:
            return int(self.report["items_accepted"])
        return self.status_counts.get("202", 0)

    def cpu_share(self, cores: int) -> float:
        """The load generator's share of the machine while it ran (1.0 = every core busy)."""
        return self.cpu_s / self.wall_s / cores if self.wall_s > 0 else 0.0

    def latency_ms(self) -> dict[str, float]:
        return latency_ms(self.report.get("latency_us", {}))


def find_wrk() -> str | None:
    return shutil.which("wrk")


def parse_wrk_output(text: str) -> dict[str, Any]:
    """The JSON line that transfers.lua's done() prints (prefixed ``WRK_JSON``)."""
    for line in reversed(text.splitlines()):
        if line.startswith("WRK_JSON "):
            parsed: dict[str, Any] = json.loads(line.removeprefix("WRK_JSON "))
            return parsed
    raise ValueError(f"no WRK_JSON line in wrk output:\n{text[-2000:]}")


def latency_ms(latency_us: dict[str, float]) -> dict[str, float]:
    return {k: round(v / 1000, 2) for k, v in latency_us.items()}


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))  # ceil(n * p / 100), at least the first value
    return ordered[int(min(rank, len(ordered))) - 1]


def write_plan(rows: list[tuple[str, str, str]], directory: Path) -> Path:
    """The data file the Lua script reads at init: one (token, source, destination) per line."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="plan-", suffix=".txt", dir=directory)
    with os.fdopen(fd, "w") as out:
        out.writelines(f"{t} {s} {d}\n" for t, s, d in rows)
    return Path(name)


def _interrupt_when_done(popen: subprocess.Popen[str], markers: list[Path]) -> None:
    """wrk sleeps for its whole -d even when every thread stopped at its quota: SIGINT ends the sleep."""
    while not all(m.exists() for m in markers):
        if not Path(f"/proc/{popen.pid}").exists() or _is_zombie(popen.pid):
            return  # ended on its own (the -d ceiling); left for wait4 to reap
        time.sleep(0.2)
    popen.send_signal(signal.SIGINT)
    for m in markers:
        m.unlink(missing_ok=True)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def run_wrk(
    wrk: str,
    url: str,
    plan: Path,
    *,
    connections: int,
    threads: int,
    duration_s: float,
    quota: int = 0,
    log_dir: Path,
    script: Path = LUA_SCRIPT,
    script_args: tuple[str, ...] = (),
) -> WrkResult:
    """Run wrk to completion and measure its own CPU time with wait4 (rusage of that child only)."""
    per_thread = -(-quota // threads) if quota else 0
    args = [
        wrk, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration_s))}s", "--timeout", "30s",
        "-s", str(script), url, "--", str(plan), str(per_thread), *script_args,
    ]  # fmt: skip
    log_dir.mkdir(parents=True, exist_ok=True)
    out_path = log_dir / "wrk.out"
    with out_path.open("w+") as out:
        started_at = time.time()
        t0 = time.perf_counter()
        popen = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        if quota:
            _interrupt_when_done(popen, [plan.with_name(f"{plan.name}.done.{i}") for i in range(1, threads + 1)])
        _, status, usage = os.wait4(popen.pid, 0)  # reaps wrk: its own CPU time, not ours
        wall = time.perf_counter() - t0
        popen.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    if popen.returncode != 0:
        raise RuntimeError(f"wrk exited with {popen.returncode}:\n{text[-2000:]}")
    return WrkResult(wall, usage.ru_utime + usage.ru_stime, started_at, parse_wrk_output(text))
