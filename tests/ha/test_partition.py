"""A real network partition between the application and its database, with nftables dropping
every packet to and from one throwaway Postgres server's port: a request on a connection
already open fails within tcp_user_timeout (as a 503-class error) instead of waiting for the
kernel's retransmissions for many minutes, and the engine connects again once the partition heals.
Needs root and nftables (Debian's `nftables`); skipped otherwise."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from core.config import Settings
from core.db import CONNECTION_LIVENESS, database_unavailable, make_engine
from tests.ha.postgres import TcpPostgres, data_root, free_port

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("nft") is None, reason="needs root and nftables to cut a connection"
)


def _nft(*args: str) -> None:
    subprocess.run(["nft", *args], check=True, capture_output=True, timeout=10)


@contextlib.contextmanager
def partitioned(port: int) -> Iterator[None]:
    """Drop every packet to or from ``port`` on this machine (a table of the test's own)."""
    table = f"bank_ha_{uuid.uuid4().hex[:8]}"
    _nft("add", "table", "inet", table)
    try:
        _nft("add", "chain", "inet", table, "input", "{ type filter hook input priority -10 ; }")
        _nft("add", "rule", "inet", table, "input", "tcp", "dport", str(port), "drop")
        _nft("add", "rule", "inet", table, "input", "tcp", "sport", str(port), "drop")
        yield
    finally:
        _nft("delete", "table", "inet", table)


@pytest.fixture
def server() -> Iterator[TcpPostgres]:
    pg = TcpPostgres(data_root("partition") / "pg", free_port()).init()
    pg.start()
    yield pg
    pg.stop("immediate")


def test_a_request_on_a_partitioned_connection_fails_within_seconds_and_the_engine_recovers(
    server: TcpPostgres,
) -> None:
    url = f"postgres://postgres@{server.hostport}/postgres?target_session_attrs=read-write"
    engine = make_engine(Settings(database_url=url), pool_size=1)
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
        with partitioned(server.port):
            started = time.monotonic()
            with pytest.raises(Exception) as raised:
                conn.execute(text("SELECT 1"))
            waited = time.monotonic() - started
    # tcp_user_timeout bounds it (10 s); the kernel alone would retransmit for about 15 minutes.
    assert waited < CONNECTION_LIVENESS["tcp_user_timeout"] / 1000 + 5, waited
    assert database_unavailable(raised.value)
    with engine.connect() as conn:  # healed: a fresh connection, no restart of anything
        assert conn.execute(text("SELECT 1")).scalar_one() == 1
    engine.dispose()
