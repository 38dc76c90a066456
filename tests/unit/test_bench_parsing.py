"""The benchmark's pure helpers: wrk and pgbench output parsing, percentiles, the Procfile."""

from __future__ import annotations

import pytest

from bench.load import WrkResult, latency_ms, parse_wrk_output, percentile
from bench.pgbench import parse_tps
from bench.system import is_settlement_worker, parse_procfile

WRK_OUTPUT = """Running 10s test @ http://127.0.0.1:8000
  2 threads and 32 connections
  Requests/sec:     17.10
WRK_JSON {"requests":86,"duration_us":5020000,"status":{"202":80,"422":6},"errors":{"connect":0,"read":0,\
"write":0,"status":6,"timeout":0},"latency_us":{"min":126210,"mean":1483600.0,"p50":1677850,"p90":1962890,\
"p99":2018350,"max":2018350}}
"""


def test_parse_wrk_output_reads_the_json_line() -> None:
    report = parse_wrk_output(WRK_OUTPUT)
    assert report["status"] == {"202": 80, "422": 6}
    assert report["errors"]["status"] == 6
    assert latency_ms(report["latency_us"])["p90"] == 1962.89


def test_batch_mode_counts_accepted_items_not_requests() -> None:
    single = WrkResult(5.0, 0.1, 0.0, parse_wrk_output(WRK_OUTPUT))
    assert single.accepted == 80
    batch = WrkResult(5.0, 0.1, 0.0, {"requests": 30, "status": {"200": 30}, "items_accepted": 2990})
    assert batch.accepted == 2990


def test_parse_wrk_output_without_the_json_line_fails() -> None:
    with pytest.raises(ValueError, match="no WRK_JSON"):
        parse_wrk_output("Running 10s test\nRequests/sec: 1\n")


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([3.0, 1.0, 2.0], 0) == 1
    with pytest.raises(ValueError):
        percentile([], 50)


@pytest.mark.parametrize(
    "line",
    [
        "tps = 2006.612345 (without initial connection time)",  # PostgreSQL 14+
        "tps = 2006.612345 (excluding connections establishing)",  # older pgbench
    ],
)
def test_parse_tps(line: str) -> None:
    output = f"number of transactions actually processed: 10040\nlatency average = 7.9 ms\n{line}\n"
    assert parse_tps(output) == pytest.approx(2006.612345)


def test_parse_tps_refuses_output_without_tps() -> None:
    with pytest.raises(ValueError):
        parse_tps("pgbench: error: connection to server failed\n")


def test_parse_procfile_keeps_order_and_commands() -> None:
    text = (
        "# comment\nrelease: alembic upgrade head\n\nweb: gunicorn app --bind 0.0.0.0:${PORT:-8000}\n"
        "worker: celery -A worker worker\nworker_fast: celery -A worker worker -Q fast\nbeat: celery beat\n"
    )
    entries = parse_procfile(text)
    assert list(entries) == ["release", "web", "worker", "worker_fast", "beat"]
    assert entries["web"] == "gunicorn app --bind 0.0.0.0:${PORT:-8000}"
    assert [n for n in entries if is_settlement_worker(n)] == ["worker", "worker_fast"]
