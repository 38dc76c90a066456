"""ops/alertmanager/alertmanager.yml in a real Alertmanager (Debian's ``prometheus-alertmanager``,
started here): who is paged, when, and that a second outage pages again.

The test runs a copy of the shipped file with only the receivers' URLs changed and every
duration divided by SCALE (10 s group_wait -> 0.5 s, 1 m group_interval -> 3 s), so routing,
grouping, inhibition and the *ratios* of the timings are the shipped ones and a run takes
seconds. Alerts are posted the way Prometheus posts them (API v2: a firing alert ends in the
future, a resolved one now). Each measured delay, multiplied back by SCALE, is the shipped
delay on top of Prometheus's detection (test_time_to_page.py adds the two).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ops.servers import (
    Alertmanager,
    MetricsTarget,
    critical_route,
    gauges,
    seconds,
    shipped_alertmanager,
    start_alertmanager,
    start_prometheus,
)
from tests.waits import wait_for

pytestmark = pytest.mark.slow

SCALE = 20
# Alertmanager's share of the promises (README "Operations"), in shipped seconds: Prometheus takes
# the rest of the 2 minutes to see a fault or a recovery (test_time_to_page.py).
PAGE_WITHIN = 15
NOTIFY_CHANGE_WITHIN = 30  # a resolution, or a second outage of the same thing (its group's next tick)
SLACK = 1.5  # seconds of real time for Alertmanager's dispatch and the HTTP post on a busy machine


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Alertmanager]:
    am = start_alertmanager(tmp_path_factory.mktemp("alertmanager"), SCALE)
    yield am
    am.stop()


def _target_down(instance: str, job: str = "worker") -> dict[str, str]:
    return {"alertname": "TargetDown", "job": job, "instance": instance, "severity": "critical"}


def _mine(notes: list[tuple[float, dict[str, Any]]], instance: str) -> list[tuple[float, dict[str, Any]]]:
    return [(at, n) for at, n in notes if any(a["labels"].get("instance") == instance for a in n["alerts"])]


def test_a_page_a_recovery_and_a_repeat_outage_each_notify_in_time(alertmanager: Alertmanager) -> None:
    """The SRE's second outage 97 s after the first healed paged nobody (group_interval 5m folded it
    into the first incident) and resolutions came 3.5-5 min late."""
    wait, interval = PAGE_WITHIN / SCALE, NOTIFY_CHANGE_WITHIN / SCALE
    instance = f"pool-{uuid.uuid4().hex[:6]}"
    alert = _target_down(instance)

    sent = time.monotonic()
    alertmanager.send(alert)
    alertmanager.wait_for("oncall", lambda notes: bool(_mine(notes, instance)), timeout=30)
    paged = _mine(alertmanager.notifications("oncall"), instance)
    assert [n["status"] for _, n in paged] == ["firing"]
    assert paged[0][0] - sent <= wait + SLACK, f"paged after {paged[0][0] - sent:.1f}s"

    healed = time.monotonic()
    alertmanager.send(alert, resolved=True)
    deadline = time.monotonic() + 10 * interval + 10
    while len(_mine(alertmanager.notifications("oncall"), instance)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    told = _mine(alertmanager.notifications("oncall"), instance)
    assert [n["status"] for _, n in told] == ["firing", "resolved"], told
    assert told[1][0] - healed <= interval + SLACK, f"resolution after {told[1][0] - healed:.1f}s (scaled)"

    # The same target fails again, a shipped 97 s (scaled) after the first outage healed.
    time.sleep(max(0.0, healed + 97 / SCALE - time.monotonic()))
    again = time.monotonic()
    alertmanager.send(alert)
    deadline = time.monotonic() + 10 * interval + 10
    while len(_mine(alertmanager.notifications("oncall"), instance)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    pages = _mine(alertmanager.notifications("oncall"), instance)
    assert [n["status"] for _, n in pages] == ["firing", "resolved", "firing"], pages
    assert pages[2][0] - again <= interval + SLACK, f"second page after {pages[2][0] - again:.1f}s (scaled)"
    assert not _mine(alertmanager.notifications("team"), instance), "a critical alert went to the team receiver"


def test_a_standing_alert_never_delays_another_targets_page(alertmanager: Alertmanager) -> None:
    """With METRICS_TOKEN set the API target was down for good; a dead settlement pool then joined
    that TargetDown group and waited for its next tick (paged at +135 s, or never)."""
    wait = PAGE_WITHIN / SCALE
    api, pool = f"api-{uuid.uuid4().hex[:6]}", f"pool-{uuid.uuid4().hex[:6]}"
    alertmanager.send(_target_down(api, job="api"))
    deadline = time.monotonic() + 30
    while not _mine(alertmanager.notifications("oncall"), api) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _mine(alertmanager.notifications("oncall"), api), "the standing alert was never paged"
    time.sleep(wait)  # well inside the standing group's interval

    sent = time.monotonic()
    alertmanager.send(_target_down(pool))
    deadline = time.monotonic() + 30
    while not _mine(alertmanager.notifications("oncall"), pool) and time.monotonic() < deadline:
        time.sleep(0.05)
    (at, page), *_ = _mine(alertmanager.notifications("oncall"), pool)
    assert at - sent <= wait + SLACK, f"the pool was paged after {at - sent:.1f}s (scaled): it waited for another group"
    assert {a["labels"]["instance"] for a in page["alerts"]} == {pool}, "grouped with another target's alert"


def test_warnings_go_to_the_team_and_causes_silence_their_effects(alertmanager: Alertmanager) -> None:
    route = shipped_alertmanager()["route"]
    wait = seconds(route["group_wait"]) / SCALE
    tag = uuid.uuid4().hex[:6]
    # Beat is down: every queue's heartbeat freezes too, but on-call hears of beat only.
    alertmanager.send({"alertname": "SchedulerDown", "severity": "critical", "instance": tag})
    time.sleep(0.2)
    alertmanager.send(
        {"alertname": "NoWorkerHeartbeat", "queue": "transfers.0", "severity": "critical", "instance": tag}
    )
    alertmanager.send({"alertname": "WebhookEndpointDown", "endpoint_id": tag, "severity": "warning", "instance": tag})
    time.sleep(wait + 3 * seconds(critical_route()["group_interval"]) / SCALE + SLACK)
    paged = {a["labels"]["alertname"] for _, n in _mine(alertmanager.notifications("oncall"), tag) for a in n["alerts"]}
    told = {a["labels"]["alertname"] for _, n in _mine(alertmanager.notifications("team"), tag) for a in n["alerts"]}
    assert paged == {"SchedulerDown"}, paged
    assert told == {"WebhookEndpointDown"}, told


# --- One outage, one page: the shipped rules in a real Prometheus, paging through Alertmanager ----

RULE_SCALE = 15  # every `for` / 15, scrape and evaluation every 1 s (15 s shipped)
# Seconds the killed target stays down once TargetDown has paged, and half of it after its restart:
# the scaled `for` of BacklogNotMeasured (8 s), twice NoWorkerHeartbeat's (4 s). What is asserted is
# that the effect never even goes *pending*, and without its guard (`unless` the target was down in
# the last 2 min) it goes pending at the first evaluation after its series vanish (1 s scrape, 1 s
# evaluation), before TargetDown's own page is awaited. It was 20 s (40 s of sleep per target).
QUIET = 8.0


def test_a_dead_pool_or_exporter_pages_once_and_its_recovery_pages_nobody(tmp_path: Path) -> None:
    """The whole settlement pool killed paged twice: TargetDown at once, then NoWorkerHeartbeat
    for every queue it served (their series vanished with it); the exporter killed likewise paged
    TargetDown and BacklogNotMeasured. Here a real Prometheus runs the shipped rules (the `for`
    durations scaled) over two stand-in targets, a pool's heartbeats and the exporter's gauges,
    and a real Alertmanager pages: each killed target pages once, its restart resolves it and
    pages nothing else, and a hung pool (target up, heartbeats frozen) still pages its queues."""
    queues = ("transfers", "transfers.0")
    pool_state = {"heartbeat": "fresh"}

    def pool_metrics() -> str:
        now = time.time()
        at = now if pool_state["heartbeat"] == "fresh" else now - 300
        return gauges(*(("bank_worker_heartbeat_timestamp_seconds", {"queue": q}, at) for q in queues))

    def exporter_metrics() -> str:
        now = time.time()
        return gauges(
            *(("bank_queue_configured", {"queue": q}, 1.0) for q in queues),
            *(("bank_queue_length", {"queue": q}, 0.0) for q in queues),
            ("bank_backlog_measured_timestamp_seconds", {}, now),
            ("bank_queue_length_measured_timestamp_seconds", {}, now),
            ("bank_oldest_pending_transfer_age_seconds", {}, 0.0),
            ("bank_scheduler_last_tick_timestamp_seconds", {}, now),
            *(("bank_dependency_up", {"dependency": d}, 1.0) for d in ("postgres", "broker", "redis")),
        )

    pool, exporter = MetricsTarget(pool_metrics), MetricsTarget(exporter_metrics)
    pool.start()
    exporter.start()
    am = start_alertmanager(tmp_path, RULE_SCALE)
    prometheus = None
    try:
        prometheus = start_prometheus(
            tmp_path,
            {"api": [], "worker": [pool.address], "backlog": [exporter.address], "alertmanager": [am.address]},
            am.address,
            interval="1s",
            rule_scale=RULE_SCALE,
        )
        wait_for(
            "both targets scraped up",
            lambda: (
                {r["metric"]["instance"]: r["value"][1] for r in prometheus.query('up{job=~"worker|backlog"}')}
                == {pool.address: "1", exporter.address: "1"}
            ),
            timeout=30,
            interval=0.2,
        )
        time.sleep(3)

        def paged(since: float = 0.0) -> list[tuple[str, str, str]]:
            """(status, alertname, instance or queue) of every alert paged since a time.monotonic()."""
            return [
                (a["status"], a["labels"]["alertname"], a["labels"].get("instance") or a["labels"].get("queue", ""))
                for at, note in am.notifications("oncall")
                if at >= since
                for a in note["alerts"]
            ]

        def ever(alertname: str, since: float) -> list[dict[str, Any]]:
            """ALERTS series of an alert (pending or firing) since a time.monotonic()."""
            window = int(time.monotonic() - since) + 1
            return prometheus.query(f'count_over_time(ALERTS{{alertname="{alertname}"}}[{window}s])')

        assert not paged(), paged()
        # The control: the pool's target answers but it takes no heartbeat (hung): its queues page.
        pool_state["heartbeat"] = "frozen"
        hung = {("firing", "NoWorkerHeartbeat", q) for q in queues}
        am.wait_for("oncall", lambda _: hung <= set(paged()), timeout=30)
        pool_state["heartbeat"] = "fresh"
        healed = {("resolved", "NoWorkerHeartbeat", q) for q in queues}
        am.wait_for("oncall", lambda _: healed <= set(paged()), timeout=30)

        for target, job, effect in ((pool, "worker", "NoWorkerHeartbeat"), (exporter, "backlog", "BacklogNotMeasured")):
            down = ("firing", "TargetDown", target.address)
            up = ("resolved", "TargetDown", target.address)
            killed = time.monotonic()
            target.stop()
            am.wait_for("oncall", lambda _, down=down: down in paged(), timeout=30)
            time.sleep(QUIET)  # the effect would have paged by now
            target.start()
            am.wait_for("oncall", lambda _, up=up: up in paged(), timeout=30)
            time.sleep(QUIET / 2)
            assert not ever(effect, killed), f"{job} down: {effect} went pending or firing: {ever(effect, killed)}"
            assert {name for _, name, _ in paged(killed)} == {"TargetDown"}, paged(killed)
    finally:
        if prometheus is not None:
            prometheus.proc.stop()
        am.stop()
        pool.stop()
        exporter.stop()
