"""An open-loop load generator: ``POST /api/v1/transfers`` on a fixed schedule, whatever the answers.

wrk (closed loop) sends a connection's next request when the previous one returns, so a slow
server is offered less load and its queueing hides from the figures. Here request ``i`` is due at
``start + i / rate``: it goes out then on an idle keep-alive connection, or on a new one if none
is idle, and its latency counts from when it was due, so a request held back (no connection, a
late event loop) is charged its wait. The generator's own CPU is reported (``cpu_s``, from
``getrusage``) next to the figures, as wrk's is.

``python -m bench.openloop URL PLAN --rate R --duration S`` prints one JSON line: counts by status,
``sent``, ``latency_ms`` (p50/p90/p99/p99.9/max), ``late_ms`` (how far behind schedule requests went
out), ``connections_opened``, ``cpu_s``, ``wall_s``. PLAN: the wrk plan file (token source
destination per line).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import sys
import time
import uuid
from collections import Counter
from urllib.parse import urlsplit

from bench.load import percentile

MAX_CONNECTIONS = 512


def _request(host: str, token: str, source: str, destination: str) -> bytes:
    fields = {"source_account_id": source, "destination_account_id": destination, "amount": 1, "currency": "USD"}
    body = json.dumps({**fields, "pin": "1357"}).encode()
    head = (
        f"POST /api/v1/transfers HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nIdempotency-Key: {uuid.uuid4()}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, the connection stays open)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, close = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "connection" and value.strip().lower() == "close":
            close = True
    if length:
        await reader.readexactly(length)
    return status, not close


class Generator:
    def __init__(self, url: str, rows: list[tuple[str, str, str]], rate: float, duration: float) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.rows, self.rate, self.duration = rows, rate, duration
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.open = 0
        self.opened = 0
        self.slots = asyncio.Semaphore(MAX_CONNECTIONS)
        self.statuses: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.late: list[float] = []

    async def one(self, due: float) -> None:
        async with self.slots:
            if self.idle:
                reader, writer = self.idle.pop()
            else:
                try:
                    reader, writer = await asyncio.open_connection(self.host, self.port)
                except OSError as exc:
                    self.statuses[f"connect:{type(exc).__name__}"] += 1
                    return
                self.opened += 1
            self.late.append(time.perf_counter() - due)
            try:
                writer.write(_request(f"{self.host}:{self.port}", *random.choice(self.rows)))
                await writer.drain()
                status, keep = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                self.statuses[f"error:{type(exc).__name__}"] += 1  # e.g. a kept-alive connection the server closed
                writer.close()
                return
            self.latencies.append(time.perf_counter() - due)
            self.statuses[str(status)] += 1
            if keep:
                self.idle.append((reader, writer))
            else:
                writer.close()

    async def run(self) -> dict[str, object]:
        total = int(self.rate * self.duration)
        start = time.perf_counter() + 0.2
        tasks = []
        for i in range(total):
            due = start + i / self.rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self.one(due)))
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - start
        for _, writer in self.idle:
            writer.close()
        ms = [x * 1000 for x in self.latencies]
        late = [x * 1000 for x in self.late]
        latency = {f"p{p:g}": round(percentile(ms, p), 2) for p in (50, 90, 99, 99.9)} if ms else {}
        behind = {f"p{p:g}": round(percentile(late, p), 2) for p in (50, 99)} if late else {}
        return {
            "rate_offered": self.rate,
            "sent": total,
            "status": dict(sorted(self.statuses.items())),
            "wall_s": round(wall, 2),
            "latency_ms": {**latency, "max": round(max(ms), 2)} if ms else {},
            "late_ms": {**behind, "max": round(max(late), 2)} if late else {},
            "connections_opened": self.opened,
        }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.openloop", description=__doc__)
    p.add_argument("url")
    p.add_argument("plan")
    p.add_argument("--rate", type=float, required=True, help="requests per second")
    p.add_argument("--duration", type=float, default=60)
    args = p.parse_args(argv)
    with open(args.plan) as f:
        rows = [tuple(line.split()) for line in f if line.strip()]
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    result = asyncio.run(Generator(args.url, rows, args.rate, args.duration).run())  # type: ignore[arg-type]
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_s"] = round(cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime, 2)
    print("OPENLOOP_JSON " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
