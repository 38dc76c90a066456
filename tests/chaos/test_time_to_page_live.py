"""Time to page at the shipped timings, live: the numbers in README "Operations".

Opt-in (BANK_LIVE_PAGING=1): at the shipped 15 s scrape and evaluation and the shipped
Alertmanager timings a run takes about ten minutes, too long for every CI run (which checks the
same promises from the files, tests/ops/test_time_to_page.py, and scaled, test_alerting.py).

Real processes (the API in production mode, a settlement pool, a webhooks pool, a maintenance
pool, beat and the backlog exporter), real Prometheus with the shipped prometheus.yml and
alerts.yml and real Alertmanager with the shipped alertmanager.yml, only addresses changed. One
fault at a time: the fault, the page on the on-call receiver, the recovery, the resolution.
Each measured time is printed and checked against the promise.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.live_stack import LiveStack, live_stack
from tests.ops.servers import Alertmanager, Prometheus

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1500),
    pytest.mark.skipif(not os.environ.get("BANK_LIVE_PAGING"), reason="opt-in: BANK_LIVE_PAGING=1 (about 10 minutes)"),
]

PAGE_WITHIN, RECOVERY_WITHIN = 120, 120


def _paged(alertname: str, status: str, **labels: str) -> Callable[[list[tuple[float, dict[str, Any]]]], bool]:
    def found(notes: list[tuple[float, dict[str, Any]]]) -> bool:
        return any(
            note["status"] == status
            and any(
                a["labels"].get("alertname") == alertname
                and a["status"] == status
                and all(a["labels"].get(k) == v for k, v in labels.items())
                for a in note["alerts"]
            )
            for _, note in notes
        )

    return found


def test_time_to_page_at_the_shipped_timings(stack: Any, tmp_path: Path) -> None:
    secrets = {name: uuid.uuid4().hex + uuid.uuid4().hex for name in ("JWT", "PIN", "WEBHOOK", "METRICS")}
    api_env = {
        "APP_ENV": "production",
        "JWT_SECRET_KEY": secrets["JWT"],
        "PIN_PEPPER": secrets["PIN"],
        "WEBHOOK_SECRETS_KEY": secrets["WEBHOOK"],
        "METRICS_TOKEN": secrets["METRICS"],
    }
    measured: dict[str, float] = {}
    with live_stack(
        tmp_path, api_env=api_env, api_workers=1, concurrency={"settle": 1, "webhooks": 1, "maintenance": 1}
    ) as live:
        am, prometheus = live.am, live.prometheus
        assert am is not None and prometheus is not None
        try:
            _faults(stack, live, am, prometheus, measured)
        finally:
            for name, seconds in measured.items():
                print(f"LIVE {name}: {seconds:.0f} s")
    late = {name: s for name, s in measured.items() if s > (PAGE_WITHIN if "page" in name else RECOVERY_WITHIN)}
    assert not late, late


def _faults(stack: Any, live: LiveStack, am: Alertmanager, prometheus: Prometheus, measured: dict[str, float]) -> None:
    """One fault at a time, each measured into ``measured``: page, then resolution."""
    # Steady state: two minutes, every target up, nothing paged.
    time.sleep(120)
    up = {r["metric"]["instance"]: r["value"][1] for r in prometheus.query("up")}
    assert set(up.values()) == {"1"}, up
    assert not am.notifications("oncall"), am.notifications("oncall")

    def when(alert: str, status: str, labels: dict[str, str], since: float) -> float:
        found = _paged(alert, status, **labels)
        notes = am.wait_for("oncall", lambda notes: found([n for n in notes if n[0] > since]), timeout=PAGE_WITHIN + 60)
        return next(at for at, note in notes if at > since and found([(at, note)])) - since

    def fault(name: str, alert: str, labels: dict[str, str], down: Callable[[], Any], up: Callable[[], Any]) -> None:
        broken = time.monotonic()
        down()
        measured[f"{name}: page"] = when(alert, "firing", labels, broken)
        healed = time.monotonic()
        up()
        measured[f"{name}: resolved"] = when(alert, "resolved", labels, healed)

    def kill(name: str) -> Callable[[], None]:
        return lambda: live.kill(name)

    def restart_settle() -> None:
        live.start_pool("settle")

    settle = {"instance": f"127.0.0.1:{live.ports['settle']}"}
    fault("settlement pool killed", "TargetDown", settle, kill("settle"), restart_settle)
    time.sleep(max(0.0, 97 - measured["settlement pool killed: resolved"]))  # the SRE's second outage
    fault("settlement pool killed again, 97 s after it healed", "TargetDown", settle, kill("settle"), restart_settle)
    time.sleep(30)
    fault("beat killed", "SchedulerDown", {}, kill("beat"), lambda: live.start_beat("beat2"))
    time.sleep(30)
    fault("API killed", "TargetDown", {"job": "api"}, kill("api"), live.start_api)
    if stack._redis_proc is not None:  # the embedded Redis (the broker) can be stopped and started
        time.sleep(30)
        fault("broker stopped", "DependencyDown", {"dependency": "broker"}, stack.stop_redis, stack.start_redis)
    # One outage, one page: nothing but the alerts that name each fault paged (the whole pool
    # killed also paged NoWorkerHeartbeat for every queue it served).
    paged = {a["labels"]["alertname"] for _, note in am.notifications("oncall") for a in note["alerts"]}
    print(f"LIVE paged: {sorted(paged)}")
    assert paged <= {"TargetDown", "SchedulerDown", "DependencyDown"}, paged
