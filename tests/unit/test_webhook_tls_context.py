"""Webhook attempts share one TLS context: building one per attempt (loading the CA bundle) made an
attempt to a local receiver ~325 ms instead of ~25 ms on the busy test machine, and held delivery
below the load in the jepsen tier (README "Failure model"). Real POSTs to a real local server; the
only thing watched is how many TLS contexts get built."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core.webhooks.transport import Answer, SignedMessage
from core.webhooks.urls import Destination
from worker import http_transport
from worker.http_transport import HttpTransport


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def test_attempts_build_no_tls_context_of_their_own(receiver: int, monkeypatch: pytest.MonkeyPatch) -> None:
    http_transport.tls_context()  # the one context, built once per process
    built: list[ssl.SSLContext] = []
    original = ssl.create_default_context

    def counting(*args: object, **kwargs: object) -> ssl.SSLContext:
        context = original(*args, **kwargs)  # type: ignore[arg-type]
        built.append(context)
        return context

    monkeypatch.setattr(ssl, "create_default_context", counting)
    message = SignedMessage(
        url=f"http://hooks.partner.example:{receiver}/hook",
        destination=Destination("hooks.partner.example", ("127.0.0.1",)),
        headers={"content-type": "application/json"},
        body=b"{}",
        timeout=5,
        body_limit=1024,
    )
    for _ in range(3):
        assert HttpTransport().send(message).answer == Answer.ACCEPTED
    assert built == []
    assert http_transport.tls_context() is http_transport.tls_context()
    assert http_transport.tls_context().verify_mode == ssl.CERT_REQUIRED
    assert http_transport.tls_context().check_hostname
