"""The formation's start race, kept fixed: every pg_autoctl invocation mkdir -p's its node's XDG
state directories (stat, then mkdir), and two meeting a missing one together make the loser fail with
"Failed to create state directory ...: File exists" (the failover test's formation failed to start so
in CI). Without the directories made first, concurrent `pg_autoctl show state` on a fresh directory
failed this way in 1 to 3 rounds of 10; with `formation.sh dirs` (what `start` does first) none
may. Real pg_autoctl processes; skipped without pg_autoctl (formation.sh installs it as root)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.ha.formation import SCRIPT
from tests.ha.postgres import data_root

PG_BIN = "/usr/lib/postgresql/15/bin"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 and shutil.which("pg_autoctl") is None,
    reason="needs pg_autoctl (postgresql-15-auto-failover), or root to install it",
)


def _concurrent_show_state(directory: Path, n: int = 8) -> list[str]:
    env = {
        **os.environ,
        "PATH": f"{PG_BIN}:{os.environ['PATH']}",
        "XDG_RUNTIME_DIR": str(directory / "run"),
        "XDG_CONFIG_HOME": str(directory / "config"),
        "XDG_DATA_HOME": str(directory / "data"),
    }
    prefix = ["runuser", "-u", "bankha", "--"] if os.geteuid() == 0 else []
    command = [*prefix, "env", *(f"{k}={env[k]}" for k in ("PATH", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME"))]
    command += [f"XDG_DATA_HOME={env['XDG_DATA_HOME']}", "pg_autoctl", "show", "state", "--pgdata"]
    procs = [
        subprocess.Popen(
            [*command, str(directory / "monitor")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(n)
    ]
    return [p.communicate(timeout=60)[0] for p in procs]


def test_made_state_directories_leave_no_mkdir_race() -> None:
    # Without the directories made first, 1 to 3 rounds in 10 raced here: 20 rounds catch a regression
    # in nearly every run (a probabilistic test of a race; with the fix it cannot fail).
    for _ in range(20):
        directory = Path(tempfile.mkdtemp(prefix="dirs-", dir=data_root("ha")))
        try:
            subprocess.run([str(SCRIPT), "dirs", str(directory)], check=True, capture_output=True, timeout=300)
            outputs = _concurrent_show_state(directory)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        # There is no formation, so each fails, but on its missing configuration, never in a mkdir.
        assert not [o for o in outputs if "Failed to create state directory" in o], outputs
        assert all("configuration file" in o for o in outputs), outputs
