#!/usr/bin/env bash
# ./run.sh demo | serve | test [pytest args] | lint
# Creates .venv and installs requirements-dev.txt when they change, then runs the command.
# `./run.sh test` alone (the README's and CI's command: the whole suite) lints first and stops on
# any finding (ruff check, ruff format --check, mypy: seconds, before minutes of tests); with
# pytest arguments (chosen tests, a tier) it runs only them.
# Uses DATABASE_URL / REDIS_URL / CELERY_BROKER_URL when set, else embedded Postgres and Redis in .data/.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
want=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat .venv/.requirements.sha 2>/dev/null || true)" != "$want" ]; then
  echo "run.sh: installing requirements into .venv (first run, or they changed; about 20 s)..." >&2
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r requirements-dev.txt
  echo "$want" > .venv/.requirements.sha
  echo "run.sh: .venv is ready" >&2
fi

lint() {
  .venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy
}

cmd=${1:-demo}
[ $# -gt 0 ] && shift
case "$cmd" in
  demo|serve) exec .venv/bin/python -m devtools "$cmd" "$@" ;;
  test)
    if [ $# -eq 0 ]; then
      lint || { echo "run.sh: lint failed (above); fix it before the suite runs" >&2; exit 1; }
    fi
    exec .venv/bin/python -m pytest "$@" ;;
  lint) lint ;;
  *) echo "usage: ./run.sh demo [--keep] | serve | test [pytest args] | lint" >&2; exit 2 ;;
esac
