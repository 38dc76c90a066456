"""Throughput and latency of the whole pipeline, against a running system.

    ./run.sh serve &            # or any deployment
    .venv/bin/python -m bench.transfers --url http://127.0.0.1:8000 --transfers 1000 --concurrency 16

Reports accept latency (POST /transfers -> 202) percentiles, acceptance throughput, and the time
until every transfer is final (settlement throughput). Speed targets are checked here, never with
timed assertions in tests.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx

PASSWORD = "bench password 123"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--transfers", type=int, default=500)
    parser.add_argument("--accounts", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--admin-email", default=os.environ.get("ADMIN_EMAIL", "admin@bank.local"))
    parser.add_argument("--admin-password", default=os.environ.get("ADMIN_PASSWORD", "admin-password-for-demo-only"))
    args = parser.parse_args()

    api = httpx.Client(base_url=f"{args.url}/api/v1", timeout=30, limits=httpx.Limits(max_connections=64))
    admin = {
        "Authorization": "Bearer "
        + api.post("/auth/login", json={"email": args.admin_email, "password": args.admin_password}).json()[
            "access_token"
        ]
    }
    people = []
    for i in range(args.accounts):
        email = f"bench.{uuid.uuid4().hex[:8]}.{i}@example.com"
        reg = api.post("/auth/register", json={"email": email, "password": PASSWORD, "full_name": "Bench"}).json()
        api.post(f"/admin/users/{reg['user']['id']}/kyc", json={"decision": "APPROVE"}, headers=admin)
        api.post(f"/admin/accounts/{reg['account']['id']}/deposits", json={"amount": 10_000_000, "currency": "USD"},
                 headers={**admin, "Idempotency-Key": str(uuid.uuid4())})  # fmt: skip
        token = api.post("/auth/login", json={"email": email, "password": PASSWORD}).json()["access_token"]
        h = {"Authorization": f"Bearer {token}"}
        api.put("/me/pin", json={"pin": "1357"}, headers=h)
        people.append((reg["account"]["id"], h))

    rng = random.Random(7)
    plan = [rng.sample(people, 2) for _ in range(args.transfers)]
    latencies: list[float] = []

    def send(pair: list) -> str:  # type: ignore[type-arg]
        (src, headers), (dst, _) = pair
        started = time.perf_counter()
        r = api.post("/transfers", json={"source_account_id": src, "destination_account_id": dst, "amount": 1,
                                         "currency": "USD", "pin": "1357"},
                     headers={**headers, "Idempotency-Key": str(uuid.uuid4())})  # fmt: skip
        latencies.append(time.perf_counter() - started)
        r.raise_for_status()
        return str(r.json()["id"])

    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.concurrency) as pool:
        ids = list(pool.map(send, plan))
    accepted_in = time.perf_counter() - t0
    pending = list(ids)
    while pending:  # the admin may read any transfer
        pending = [i for i in pending if api.get(f"/transfers/{i}", headers=admin).json()["status"] == "PENDING"]
        if pending:
            time.sleep(0.2)
    final_in = time.perf_counter() - t0
    print(f"transfers: {len(ids)}  concurrency: {args.concurrency}")
    print(f"accept latency ms: p50={percentile(latencies, 50) * 1000:.1f} p95={percentile(latencies, 95) * 1000:.1f} "
          f"p99={percentile(latencies, 99) * 1000:.1f} mean={statistics.mean(latencies) * 1000:.1f}")  # fmt: skip
    print(f"accepted/s: {len(ids) / accepted_in:.1f}   all final after {final_in:.1f}s")
    print(f"settled/s: {len(ids) / final_in:.1f}")


if __name__ == "__main__":
    main()
