"""``./run.sh test`` (the README's and CI's command) runs ruff check, ruff format --check and mypy
before the suite and stops on a finding; with pytest arguments it runs only the tests.

run.sh is run for real, in a copy of the checkout's scripts whose .venv holds stub tools that
record their calls and exit as told, so the test takes milliseconds and needs no server.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = ["ruff check .", "ruff format --check .", "mypy"]


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    for name in ("run.sh", "requirements.txt", "requirements-dev.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for tool in ("python", "ruff", "mypy"):
        # Each stub appends its command line to calls.log and fails if FAIL names it.
        stub = bin_dir / tool
        stub.write_text(
            "#!/usr/bin/env bash\n"
            f'echo "{tool} $*" >> "$(dirname "$0")/../../calls.log"\n'
            f'[[ " $FAIL " == *" {tool} "* ]] && exit 1\n'
            "exit 0\n"
        )
        stub.chmod(0o755)
    requirements = (tmp_path / "requirements.txt").read_bytes() + (tmp_path / "requirements-dev.txt").read_bytes()
    (tmp_path / ".venv" / ".requirements.sha").write_text(hashlib.sha256(requirements).hexdigest() + "\n")
    return tmp_path


def _run(checkout: Path, *args: str, fail: str = "") -> tuple[int, list[str]]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")}
    env["FAIL"] = fail
    done = subprocess.run([str(checkout / args[0]), *args[1:]], env=env, capture_output=True, check=False)
    log = checkout / "calls.log"
    return done.returncode, [line.strip() for line in log.read_text().splitlines()] if log.exists() else []


def test_the_whole_suite_is_linted_first(checkout: Path) -> None:
    code, calls = _run(checkout, "run.sh", "test")
    assert code == 0
    assert calls == [*LINT, "python -m pytest"]


@pytest.mark.parametrize("failing", ["ruff", "mypy"])
def test_a_lint_finding_stops_before_the_suite(checkout: Path, failing: str) -> None:
    code, calls = _run(checkout, "run.sh", "test", fail=failing)
    assert code != 0
    assert not any(c.startswith("python -m pytest") for c in calls), calls


def test_ci_runs_the_linted_suite() -> None:
    """.ci/run ends in the README's command with no arguments: the linted whole suite."""
    commands = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert [c for c in commands if c and not c.startswith("#")][-1] == "./run.sh test"


def test_chosen_tests_run_without_the_lint(checkout: Path) -> None:
    code, calls = _run(checkout, "run.sh", "test", "tests/unit", "-q")
    assert code == 0 and calls == ["python -m pytest tests/unit -q"]
