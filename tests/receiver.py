"""A real HTTP webhook receiver on 127.0.0.1 (pytest-httpserver, threaded) that records every
request its endpoints get.

Each test takes its own path with ``endpoint()``, optionally scripting the first answers
(``endpoint(500, 500)`` answers 500 twice, then 200): pytest-httpserver's one-shot handlers
answer first, in order, then the endpoint's permanent one. Threaded, so a slow endpoint
(``Reply(200, delay=3)``) does not hold up the others.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic()


class Receiver:
    def __init__(self) -> None:
        self._server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
        self._server.no_handler_status_code = 404  # a path no test registered
        self._server.start()
        self._lock = threading.Lock()
        self._received: dict[str, list[Received]] = {}
        self._then: dict[str, Reply] = {}

    def endpoint(self, *script: int | Reply, then: int | Reply = 200) -> str:
        path = f"/hook/{uuid.uuid4().hex}"
        with self._lock:
            self._received[path] = []
            self._then[path] = _reply(then)
        for reply in script:
            self._server.expect_oneshot_request(path).respond_with_handler(
                self._answer(path, lambda r=reply: _reply(r))
            )
        self._server.expect_request(path).respond_with_handler(self._answer(path, lambda: self._then[path]))
        return self._server.url_for(path)

    def answer_from_now_on(self, url: str, reply: int | Reply) -> None:
        """What the endpoint answers once its script (if any) is used up."""
        with self._lock:
            self._then[urlsplit(url).path] = _reply(reply)

    def requests(self, url: str) -> list[Received]:
        with self._lock:
            return list(self._received.get(urlsplit(url).path, []))

    def wait(self, url: str, count: int, timeout: float = 30) -> list[Received]:
        deadline = time.monotonic() + timeout
        while True:
            got = self.requests(url)
            if len(got) >= count:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"{url}: {len(got)} of {count} requests after {timeout}s")
            time.sleep(0.05)

    def close(self) -> None:
        self._server.clear()
        self._server.stop()

    def _answer(self, path: str, reply: Callable[[], Reply]) -> Callable[[Request], Response]:
        def respond(request: Request) -> Response:
            received = Received(dict(request.headers), request.get_data(), time.monotonic())
            with self._lock:
                self._received[path].append(received)
                answer = reply()
            if answer.delay:
                time.sleep(answer.delay)
            return Response("ok" if answer.status < 300 else "no", answer.status, answer.headers)

        return respond


def _reply(r: int | Reply) -> Reply:
    return r if isinstance(r, Reply) else Reply(r)


def running() -> Iterator[Receiver]:
    receiver = Receiver()
    try:
        yield receiver
    finally:
        receiver.close()
