"""bench/openloop.py against a local HTTP server: every scheduled request is sent and answered,
on kept-alive connections, and its figures are reported (no timing is asserted)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.openloop import Generator


class _Accepting(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[dict[str, str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        _Accepting.seen.append(dict(self.headers))
        body = b'{"status":"PENDING"}'
        self.send_response(202 if self.path == "/api/v1/transfers" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Accepting)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_every_scheduled_request_is_sent_and_counted(server: str) -> None:
    _Accepting.seen.clear()
    rows = [("tok", "a", "b"), ("tok2", "c", "d")]
    result = asyncio.run(Generator(server, rows, rate=40, duration=1).run())
    assert result["sent"] == 40 and result["status"] == {"202": 40}
    assert set(result["latency_ms"]) == {"p50", "p90", "p99", "p99.9", "max"}  # type: ignore[arg-type]
    assert 1 <= result["connections_opened"] <= 40  # type: ignore[operator]
    keys = {h["Idempotency-Key"] for h in _Accepting.seen}
    assert len(keys) == 40  # a fresh key per request
    assert {h["Authorization"] for h in _Accepting.seen} <= {"Bearer tok", "Bearer tok2"}
