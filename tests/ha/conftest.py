"""The ha tier's order and its formation: test_failover.py runs last of the tier, and its
pg_auto_failover formation (about 30 s to start, mostly waiting on pg_autoctl's state machine and
the secondary's base backup) starts in the background when the tier's first test does, so the
tier's other tests (checker, compose, formation directories, multi-host, partition) run meanwhile."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from tests.ha.formation import Formation, formation

HA = Path(__file__).resolve().parent
FAILOVER = HA / "test_failover.py"


def _in_ha(item: pytest.Item) -> bool:
    return HA in Path(str(item.path)).parents


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move the failover test(s) to the end of the ha tier's run of items (nothing else moves)."""
    failover = [i for i in items if Path(str(i.path)) == FAILOVER]
    if not failover:
        return
    for item in failover:
        items.remove(item)
    rest = [n for n, i in enumerate(items) if _in_ha(i)]
    at = rest[-1] + 1 if rest else len(items)
    items[at:at] = failover


@pytest.fixture(scope="package", autouse=True)
def formation_starting(request: pytest.FixtureRequest) -> Iterator[Future[Formation] | None]:
    """The formation, started in a thread when the tier begins, if test_failover.py is to run;
    stopped when the tier ends. Where pg_autoctl is not installed yet, formation.sh installs it
    (apt-get): then nothing runs beside it (test_formation_dirs.py's `formation.sh dirs` would
    install too), and the start waits for the failover test."""
    wanted = any(Path(str(i.path)) == FAILOVER for i in request.session.items)
    if not wanted or (shutil.which("pg_autoctl") is None and os.geteuid() == 0):
        yield None
        return
    started: AbstractContextManager[Formation] = formation()
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(started.__enter__)
        try:
            yield future
        finally:
            if future.exception() is None:
                started.__exit__(None, None, None)
