"""A real HTTP webhook receiver on 127.0.0.1 (werkzeug in a thread) that records every request.

Each test takes its own path with ``endpoint()``, optionally scripting the first answers
(``endpoint(500, 500)`` answers 500 twice, then 200).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response


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
        self._lock = threading.Lock()
        self._received: dict[str, list[Received]] = defaultdict(list)
        self._scripts: dict[str, list[Reply]] = {}
        self._after: dict[str, Reply] = {}
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.base = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def endpoint(self, *script: int | Reply, then: int | Reply = 200) -> str:
        path = f"/hook/{uuid.uuid4().hex}"
        with self._lock:
            self._scripts[path] = [_reply(r) for r in script]
            self._after[path] = _reply(then)
        return self.base + path

    def answer_from_now_on(self, url: str, reply: int | Reply) -> None:
        path = urlsplit(url).path
        with self._lock:
            self._scripts[path] = []
            self._after[path] = _reply(reply)

    def requests(self, url: str) -> list[Received]:
        with self._lock:
            return list(self._received[urlsplit(url).path])

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
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def _app(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        received = Received(dict(request.headers), request.get_data(), time.monotonic())
        with self._lock:
            self._received[request.path].append(received)
            script = self._scripts.get(request.path)
            reply = script.pop(0) if script else self._after.get(request.path, Reply(404))
        if reply.delay:
            time.sleep(reply.delay)
        return Response("ok" if reply.status < 300 else "no", reply.status, reply.headers)(environ, start_response)


def _reply(r: int | Reply) -> Reply:
    return r if isinstance(r, Reply) else Reply(r)


def running() -> Iterator[Receiver]:
    receiver = Receiver()
    try:
        yield receiver
    finally:
        receiver.close()
