"""The application's side of a failover, on real Postgres servers: a multi-host DATABASE_URL
with target_session_attrs=read-write finds the writable server whatever the order, skips a
host that is down or does not answer within connect_timeout, the pool drops connections to a
server that died and reconnects to the other by itself, and every TCP connection carries the
keepalive options that bound a wait on a dead host."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

from core.config import Settings
from core.db import CONNECTION_LIVENESS, database_unavailable, make_engine
from tests.ha.postgres import TcpPostgres, data_root, free_port


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[TcpPostgres, TcpPostgres]]:
    root = data_root("multihost")
    first = TcpPostgres(root / "first", free_port()).init()
    second = TcpPostgres(root / "second", free_port()).init()
    for server in (first, second):
        server.start()
    yield first, second
    for server in (first, second):
        with contextlib.suppress(Exception):  # already stopped by a test
            server.stop("immediate")


def _engine(*hostports: str) -> Engine:
    hosts = ",".join(hostports)
    # libpq's own multi-host spelling, as `pg_autoctl show uri` prints it.
    url = f"postgres://postgres@{hosts}/postgres?target_session_attrs=read-write"
    return make_engine(Settings(database_url=url), pool_size=1)


def _port(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT current_setting('port')")).scalar_one())


def test_connections_carry_keepalives_and_connect_timeout(servers: tuple[TcpPostgres, TcpPostgres]) -> None:
    engine = _engine(servers[0].hostport)
    with engine.connect() as conn:
        driver = conn.connection.driver_connection
        assert driver is not None
        params = driver.info.get_parameters()
        for name, value in CONNECTION_LIVENESS.items():
            assert params[name] == str(value), name
        assert CONNECTION_LIVENESS["connect_timeout"] <= 5
        # What the kernel was told, read back from the connection's own socket.
        sock = socket.socket(fileno=socket.dup(driver.fileno()))
        try:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == CONNECTION_LIVENESS["keepalives_idle"]
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 2
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 10000
        finally:
            sock.close()
    engine.dispose()


def test_a_host_that_never_answers_is_skipped_after_connect_timeout(servers: tuple[TcpPostgres, TcpPostgres]) -> None:
    # A host that accepts TCP but never speaks (a hung machine, a black-holed route): without
    # connect_timeout libpq would wait for it forever.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        engine = _engine(f"127.0.0.1:{silent.getsockname()[1]}", servers[1].hostport)
        started = time.monotonic()
        assert _port(engine) == servers[1].port
        assert time.monotonic() - started < CONNECTION_LIVENESS["connect_timeout"] + 3
        engine.dispose()


def test_read_write_picks_the_writable_server_and_the_pool_follows_a_failover(
    servers: tuple[TcpPostgres, TcpPostgres],
) -> None:
    first, second = servers
    engine = _engine(first.hostport, second.hostport)
    assert _port(engine) == first.port  # both writable: the first listed wins

    # The first server dies with the connection in the pool: the next checkout's first statement
    # finds it dead and is sent again on a fresh connection, to the server still up, with no restart.
    first.stop("immediate")
    started = time.monotonic()
    assert _port(engine) == second.port
    assert time.monotonic() - started < 5

    # With no writable server at all, the error is one the API answers as 503.
    second.stop("immediate")
    with pytest.raises(Exception) as raised:
        _port(engine)
    assert database_unavailable(raised.value)
    engine.dispose()


def test_a_read_only_server_is_passed_over() -> None:
    tmp_path = data_root("multihost-ro")
    # What a demoted primary or a standby looks like to libpq's read-write check.
    standby = TcpPostgres(tmp_path / "ro", free_port()).init("default_transaction_read_only = on")
    primary = TcpPostgres(tmp_path / "rw", free_port()).init()
    standby.start()
    primary.start()
    try:
        engine = _engine(standby.hostport, primary.hostport)
        assert _port(engine) == primary.port
        engine.dispose()
    finally:
        standby.stop("immediate")
        primary.stop("immediate")
