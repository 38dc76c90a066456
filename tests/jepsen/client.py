"""The load: careful clients that submit transfers and read them back over the API host's link,
recording every request and its answer in a History (tests/ha/checker.py).

A client sends each transfer with an Idempotency-Key and, on a 503 or no answer (timeout, reset),
sends it again with the same key until it gets one; then reads the transfer's status. Any other
answer is recorded and the client moves on (a 422 for funds a concurrent debit took is the
system's right answer, not a fault)."""

from __future__ import annotations

import random
import threading
import time
import uuid

import httpx

from tests import factories
from tests.chaos.conftest import Party
from tests.ha.checker import History


class Load:
    def __init__(
        self, base_url: str, parties: list[Party], history: History, clients: int = 3, pause: float = 1.0
    ) -> None:
        self.base_url, self.parties, self.history = base_url, parties, history
        self.pause = pause  # between one client's transfers: a rate the webhooks keep up with here
        self.stop = threading.Event()
        self.owner: dict[uuid.UUID, Party] = {}
        self.threads = [threading.Thread(target=self._client, args=(n,), daemon=True) for n in range(clients)]

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(120)

    def _call(
        self, http: httpx.Client, kind: str, method: str, url: str, key: str | None = None, **kwargs: object
    ) -> httpx.Response | None:
        started = time.monotonic()
        try:
            response = http.request(method, url, **kwargs)  # type: ignore[arg-type]
        except httpx.TransportError as exc:
            self.history.saw(0)
            self.history.op(kind, 0, started, key=key, error=type(exc).__name__)
            return None
        self.history.saw(response.status_code)
        transfer_id = None
        if response.status_code in (200, 201, 202) and kind in ("submit", "read"):
            transfer_id = uuid.UUID(response.json()["id"])
        self.history.op(kind, response.status_code, started, key=key, transfer_id=transfer_id)
        if response.status_code == 503 and not response.headers.get("Retry-After"):
            self.history.problem(f"a 503 without Retry-After on {method} {url}")
        if response.status_code >= 500 and response.status_code != 503:
            self.history.problem(f"{response.status_code} on {method} {url}: {response.text[:300]}")
        return response

    def _client(self, n: int) -> None:
        rng = random.Random(n)
        # A client's own connection pool; 10 s: longer than any fault's answer should take, and
        # a paused or cut-off API host shows as "no answer" (status 0) instead of a hung client.
        with httpx.Client(base_url=f"{self.base_url}/api/v1", timeout=10) as http:
            while not self.stop.is_set():
                src, dst = rng.sample(self.parties, 2)
                key = str(uuid.uuid4())
                body = {
                    "source_account_id": str(src.account_id),
                    "destination_account_id": str(dst.account_id),
                    "amount": rng.randint(1, 300),
                    "currency": "USD",
                    "pin": factories.PIN,
                }
                transfer_id = None
                self.history.send(key)
                while True:
                    headers = {**src.headers, "Idempotency-Key": key}
                    r = self._call(http, "submit", "POST", "/transfers", key=key, json=body, headers=headers)
                    if r is not None and r.status_code in (200, 201, 202):
                        transfer_id = uuid.UUID(r.json()["id"])
                        self.owner[transfer_id] = src
                        self.history.accept(key, transfer_id)
                        break
                    if r is not None and r.status_code != 503:
                        break  # refused for a reason of the request's own (recorded)
                    if self.stop.is_set():
                        # Stopping with the outcome unknown: the checker allows the key to have
                        # taken effect once (it was sent), never twice.
                        break
                    time.sleep(0.3)
                if transfer_id is not None:
                    read = self._call(http, "read", "GET", f"/transfers/{transfer_id}", headers=src.headers)
                    if read is not None and read.status_code == 200:
                        self.history.read(transfer_id, read.json()["status"])
                self.stop.wait(self.pause)

    def read_all(self, http: httpx.Client) -> None:
        """Each acknowledged transfer's status as the API reports it once everything settled."""
        for acc in list(self.history.accepted):
            r = http.get(f"/transfers/{acc.transfer_id}", headers=self.owner[acc.transfer_id].headers)
            self.history.saw(r.status_code)
            if r.status_code == 200:
                self.history.read(acc.transfer_id, r.json()["status"])
