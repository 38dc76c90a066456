"""The schema comes from Alembic, and the models have not drifted from it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_alembic_check_finds_no_drift() -> None:
    alembic = Path(sys.executable).parent / "alembic"
    result = subprocess.run([str(alembic), "check"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No new upgrade operations detected" in result.stdout + result.stderr
