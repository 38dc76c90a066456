"""The embedded Postgres starts without platformdirs' XDG_RUNTIME_DIR warning where no login session set one."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# What devtools.services.start does before it starts pgserver, whose import reads the runtime directory.
START = (
    "import os; from devtools import services; services.ensure_runtime_dir(); import pgserver;"
    " print(os.environ['XDG_RUNTIME_DIR'])"
)


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", START], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_no_runtime_dir_warning_and_a_private_directory(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    env["TMPDIR"] = str(tmp_path)
    started = _run(env)
    assert started.returncode == 0, started.stderr
    assert started.stderr == ""  # was: RuntimeDirWarning: XDG_RUNTIME_DIR is not set, falling back to ...
    runtime = Path(started.stdout.strip())
    assert runtime == tmp_path / f"runtime-{os.geteuid()}"
    assert stat.S_IMODE(runtime.stat().st_mode) == 0o700


def test_a_runtime_dir_the_user_set_is_kept(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o700)
    started = _run({**os.environ, "XDG_RUNTIME_DIR": str(mine)})
    assert started.returncode == 0, started.stderr
    assert (started.stdout.strip(), started.stderr) == (str(mine), "")


def test_a_fallback_directory_left_world_readable_is_made_private(tmp_path: Path) -> None:
    # pgserver used to create it with the default mode, and platformdirs warned about that on the next start.
    (tmp_path / f"runtime-{os.geteuid()}").mkdir(mode=0o755)
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    started = _run({**env, "TMPDIR": str(tmp_path)})
    assert (started.returncode, started.stderr) == (0, "")
    assert stat.S_IMODE(Path(started.stdout.strip()).stat().st_mode) == 0o700
