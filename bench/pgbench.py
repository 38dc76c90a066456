"""pgbench on the same Postgres server, as the yardstick for settlements per second."""

from __future__ import annotations

import glob
import re
import shutil
import subprocess
from pathlib import Path

from bench import db

DATABASE = "bench_pgbench"
_TPS = re.compile(r"^tps = ([0-9.]+) \((?:without initial connection time|excluding connections establishing)\)", re.M)


def find_pgbench() -> str | None:
    found = shutil.which("pgbench")
    if found:
        return found
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pgbench"))
    return candidates[-1] if candidates else None


def parse_tps(output: str) -> float:
    """The tps figure of a ``pgbench -T`` run (PostgreSQL 14+ and older spellings)."""
    match = _TPS.search(output)
    if not match:
        raise ValueError(f"no tps line in pgbench output:\n{output[-2000:]}")
    return float(match.group(1))


def run(pgbench: str, server_url: str, duration_s: float, log_dir: Path, scale: int = 10) -> float:
    """Fresh bench_pgbench database, ``pgbench -i -s scale``, then ``-c 16 -j 2 -T duration -M prepared``."""
    target = db.recreate(server_url, DATABASE)
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / "pgbench.log").open("a") as log:
        subprocess.run([pgbench, "-i", "-q", "-s", str(scale), target], check=True, stdout=log, stderr=log)
        done = subprocess.run(
            [pgbench, "-c", "16", "-j", "2", "-T", str(max(1, round(duration_s))), "-M", "prepared", target],
            check=True,
            capture_output=True,
            text=True,
        )
        log.write(done.stdout + done.stderr)
    return parse_tps(done.stdout)
